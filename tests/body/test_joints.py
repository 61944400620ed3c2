import numpy as np
import torch

from body.joints import (
    COCO17_FLIP_INDEX, COCO17_FLIP_PAIRS, COCO17_HIGHLY_ARTICULATED, COCO17_NAMES, H36M_TO_LSP14,
    PELVIS_3DPW_H36M, PELVIS_EMDB_SMPL24,
    SMPL_JOINT_NAMES, SMPL_PARENTS, SMPL_TO_COCO17, SMPLX_JOINT_NAMES, SMPLX_PARENTS,
    SMPLX_TO_COCO17, VERTEX_JOINT_NAMES, center_on_pelvis,
)


def _name(index, skeleton):
    return skeleton[index] if index < len(skeleton) else VERTEX_JOINT_NAMES[index - len(skeleton)]


def test_coco_maps_pick_joints_of_the_same_name():
    for skeleton, mapping in ((SMPLX_JOINT_NAMES, SMPLX_TO_COCO17),
                              (SMPL_JOINT_NAMES, SMPL_TO_COCO17)):
        assert len(mapping) == 17
        for coco, idx in zip(COCO17_NAMES, mapping):
            name = _name(idx, skeleton)
            # COCO hips are SMPL hips; shoulders are SMPL shoulders; ankles SMPL ankles
            assert name == coco, (coco, name)


def test_coco17_flip_table_by_hand():
    # the mmpose/ViTPose COCO flip pairs: eyes, ears, shoulders, elbows, wrists, hips, knees, ankles
    assert COCO17_FLIP_PAIRS == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14),
                                 (15, 16))
    assert COCO17_FLIP_INDEX == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert all(COCO17_FLIP_INDEX[m] == k for k, m in enumerate(COCO17_FLIP_INDEX))  # involution
    for left, right in COCO17_FLIP_PAIRS:
        assert COCO17_NAMES[left] == COCO17_NAMES[right].replace("right_", "left_")


def test_trees_and_sets():
    assert len(SMPLX_PARENTS) == len(SMPLX_JOINT_NAMES) == 55
    assert len(SMPL_PARENTS) == 24
    assert all(p < i for i, p in enumerate(SMPLX_PARENTS))
    assert SMPLX_PARENTS[27] == 26 and SMPLX_PARENTS[25] == 20 and SMPLX_PARENTS[40] == 21
    assert [COCO17_NAMES[i].split("_")[1] for i in COCO17_HIGHLY_ARTICULATED] == \
        ["elbow", "elbow", "wrist", "wrist", "knee", "knee", "ankle", "ankle"]
    assert len(H36M_TO_LSP14) == len(set(H36M_TO_LSP14)) == 14


def test_center_on_pelvis_numpy_and_torch():
    joints = np.arange(24 * 3, dtype=float).reshape(1, 24, 3)
    out = center_on_pelvis(joints, PELVIS_EMDB_SMPL24)
    np.testing.assert_allclose(out[0, 1] + out[0, 2], 0)
    out_t = center_on_pelvis(torch.tensor(joints), PELVIS_3DPW_H36M)
    assert torch.all(out_t[0, 0] == 0)
    np.testing.assert_allclose(out_t.numpy()[0, 5], joints[0, 5] - joints[0, 0])
