"""Joint sets and index maps (docs/formats.md "Joints", docs/method.md §6).

All maps are index lists into the joint arrays that `smplx` returns: SMPL-X outputs 55 skeleton
joints, then 21 vertex joints (nose, r/l eye, r/l ear, 6 foot points, 10 finger tips), then face
landmarks; SMPL outputs 24 skeleton joints, then the same 21 vertex joints (45 in all).
"""
from __future__ import annotations

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# SMPL-X: the first 22 joints are SMPL's body joints (the ones the model predicts,
# docs/method.md §3).
NUM_BODY_JOINTS_SMPLX = 22
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
SMPLX_JOINT_NAMES = (
    SMPL_JOINT_NAMES[:22]
    + ("jaw", "left_eye_smplhf", "right_eye_smplhf")
    + tuple(f"left_{f}{k}" for f in _FINGERS for k in (1, 2, 3))
    + tuple(f"right_{f}{k}" for f in _FINGERS for k in (1, 2, 3))
)
SMPLX_PARENTS = (
    SMPL_PARENTS[:22]
    + (15, 15, 15)
    + tuple(p for _ in _FINGERS for p in (20, None, None))
    + tuple(p for _ in _FINGERS for p in (21, None, None))
)
# fill the finger chains: each finger's 2nd and 3rd joint hang on the previous one
SMPLX_PARENTS = tuple(p if p is not None else i - 1 for i, p in enumerate(SMPLX_PARENTS))

VERTEX_JOINT_NAMES = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)


def _mirrored(name: str) -> str:
    """The joint name with left and right swapped (names without a side map to themselves)."""
    for side, other in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(side):
            return other + name[len(side):]
    return name


# COCO-17 left/right mirror: channel k of a mirrored image is joint COCO17_FLIP_INDEX[k]
# (the nose is its own mirror), and the (left, right) index pairs it swaps.
COCO17_FLIP_INDEX = tuple(COCO17_NAMES.index(_mirrored(name)) for name in COCO17_NAMES)
COCO17_FLIP_PAIRS = tuple((k, m) for k, m in enumerate(COCO17_FLIP_INDEX) if k < m)
# Nose, eyes, ears: the joints that tell a body in profile from its mirror image (docs/method.md
# §4 "2D", `losses.keypoints_2d_face`).
COCO17_FACE = (0, 1, 2, 3, 4)
# Elbows, wrists, knees, ankles: the joints whose MMD target may be heatmap samples
# (docs/method.md §4).
COCO17_HIGHLY_ARTICULATED = (7, 8, 9, 10, 13, 14, 15, 16)

# OpenPose-25 from the smplx joint outputs (the reference release's route to COCO-17).
SMPLX_TO_OP25 = (55, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7,
                 56, 57, 58, 59, 60, 61, 62, 63, 64, 65)
SMPL_TO_OP25 = (24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7,
                25, 26, 27, 28, 29, 30, 31, 32, 33, 34)
OP25_TO_COCO17 = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)

SMPLX_TO_COCO17 = tuple(SMPLX_TO_OP25[i] for i in OP25_TO_COCO17)
SMPL_TO_COCO17 = tuple(SMPL_TO_OP25[i] for i in OP25_TO_COCO17)

# The 24 joints of the 2D loss: the first 24 SMPL-X skeleton joints (BEDLAM-CLIFF `gtkps[:, :24]`).
SMPLX_2D_LOSS_JOINTS = tuple(range(24))

# Human3.6M-17 (from `J_regressor_h36m` on SMPL vertices) → LSP-14 (3DPW protocol,
# docs/method.md §6).
H36M_TO_LSP14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)

# Protocol pelvis rules (docs/method.md §6): joints whose mean is the root that is subtracted.
PELVIS_EMDB_SMPL24 = (1, 2)  # mean of the hips of the 24 SMPL joints
PELVIS_3DPW_H36M = (0,)  # H36M joint 0


def center_on_pelvis(joints, pelvis: tuple[int, ...]):
    """Subtract the protocol's pelvis (mean of the `pelvis` joints) from joints (..., J, 3)."""
    return joints - joints[..., list(pelvis), :].mean(-2)[..., None, :]
