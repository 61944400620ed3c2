import torch
from scipy.spatial.transform import Rotation

from body.fast_vertices import FastVertices
from body.models import load_smplx


def _rotations(batch, joints, seed):
    mats = Rotation.random(batch * joints, random_state=seed).as_matrix()
    return torch.tensor(mats, dtype=torch.float32).reshape(batch, joints, 3, 3)


def _smplx_vertices(model, betas, rot):
    kwargs = {"global_orient": rot[:, :1], "body_pose": rot[:, 1:22]}
    if rot.shape[1] > 22:  # jaw, eyes, hands
        kwargs.update(jaw_pose=rot[:, 22:23], leye_pose=rot[:, 23:24], reye_pose=rot[:, 24:25],
                      left_hand_pose=rot[:, 25:40], right_hand_pose=rot[:, 40:55])
    return model(betas=betas, **kwargs).vertices


def test_body_pose_vertices_equal_smplx_forward(body_models):
    model = load_smplx(body_models)
    rot, betas = _rotations(16, 22, seed=0), 2 * torch.randn(16, 11)
    got = FastVertices(model, chunk=5)(betas, rot)  # 4 chunks, the last one short
    expected = _smplx_vertices(model, betas, rot)
    assert got.shape == expected.shape == (16, 10475, 3)
    assert (got - expected).abs().max() < 1e-5  # metres: float32 rounding, not a different body


def test_every_joint_posed_and_a_vertex_subset(body_models):
    model = load_smplx(body_models, num_betas=10)
    ids = [10474, 0, 5000, 5000, 123]
    rot, betas = _rotations(4, 55, seed=1), torch.randn(4, 10)
    got = FastVertices(model, ids)(betas, rot)
    expected = _smplx_vertices(model, betas, rot)[:, ids]
    assert got.shape == (4, 5, 3)
    assert (got - expected).abs().max() < 1e-5
