import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from body.fast_joints import FastJoints
from body.joints import SMPL_TO_COCO17, SMPLX_2D_LOSS_JOINTS, SMPLX_TO_COCO17
from body.models import load_smpl, load_smplx


def _rotations(batch, joints, seed, dtype=torch.float32):
    mats = Rotation.random(batch * joints, random_state=seed).as_matrix()
    return torch.tensor(mats, dtype=dtype).reshape(batch, joints, 3, 3)


@pytest.fixture(scope="module")
def smplx_model(body_models):
    return load_smplx(body_models)


def smplx_output(model, betas, rot, transl=None):
    """smplx's own forward of an SMPL-X Layer with the first rot.shape[1] joints posed."""
    kwargs = {"global_orient": rot[:, :1], "body_pose": rot[:, 1:22]}
    if rot.shape[1] > 22:  # SMPL-X jaw, eyes, hands
        kwargs.update(jaw_pose=rot[:, 22:23], leye_pose=rot[:, 23:24], reye_pose=rot[:, 24:25],
                      left_hand_pose=rot[:, 25:40], right_hand_pose=rot[:, 40:55])
    return model(betas=betas, transl=transl, **kwargs)


def _full(model, betas, rot, transl=None):
    return smplx_output(model, betas, rot, transl).joints


def test_coco_and_loss_joints_equal_smplx_forward(smplx_model):
    ids = list(SMPLX_TO_COCO17) + list(SMPLX_2D_LOSS_JOINTS)
    fast = FastJoints(smplx_model, ids)
    rot, betas = _rotations(64, 22, seed=0), torch.randn(64, 11)
    transl = torch.randn(64, 3)
    expected = _full(smplx_model, betas, rot, transl)[:, ids]
    got = fast(betas, rot, transl)
    assert got.shape == (64, 41, 3)
    assert (got - expected).abs().max() < 1e-5


def test_every_skeleton_and_vertex_joint_with_all_55_joints_posed(smplx_model):
    ids = list(range(55 + 21))
    fast = FastJoints(smplx_model, ids)
    rot, betas = _rotations(8, 55, seed=1), torch.randn(8, 11)
    assert (fast(betas, rot) - _full(smplx_model, betas, rot)[:, ids]).abs().max() < 1e-5


def test_smpl_coco(body_models):
    model = load_smpl(body_models, "female")
    fast = FastJoints(model, SMPL_TO_COCO17)
    rot, betas = _rotations(16, 24, seed=2), torch.randn(16, 10)
    expected = model(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:]).joints
    assert (fast(betas, rot) - expected[:, list(SMPL_TO_COCO17)]).abs().max() < 1e-5


def test_gradients_equal_smplx_gradients(body_models):
    model = load_smplx(body_models).double()
    ids = list(SMPLX_TO_COCO17)
    fast = FastJoints(model, ids)
    rot = _rotations(4, 22, seed=3, dtype=torch.float64).requires_grad_()
    betas = torch.randn(4, 11, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, len(ids), 3, dtype=torch.float64)
    (fast(betas, rot) * weights).sum().backward()
    g_rot, g_betas = rot.grad.clone(), betas.grad.clone()
    rot.grad = betas.grad = None
    (_full(model, betas, rot)[:, ids] * weights).sum().backward()
    torch.testing.assert_close(g_rot, rot.grad)
    torch.testing.assert_close(g_betas, betas.grad)


def test_only_the_needed_joints_are_chained(smplx_model):
    fast = FastJoints(smplx_model, [20])  # left wrist: pelvis → spine → collar → arm
    assert fast.joints == [0, 3, 6, 9, 13, 16, 18, 20]


def test_landmark_ids_are_rejected(smplx_model):
    with pytest.raises(ValueError, match="vertex joints"):
        FastJoints(smplx_model, [80])


def test_device_and_dtype_follow_the_module(smplx_model):
    fast = FastJoints(smplx_model, SMPLX_TO_COCO17).double()
    out = fast(torch.zeros(2, 11, dtype=torch.float64),
               torch.eye(3, dtype=torch.float64).expand(2, 22, 3, 3))
    assert out.dtype == torch.float64
    assert np.isfinite(out.numpy()).all()
