import torch

from body.fast_vertices import FastVertices
from body.models import load_smplx
from tests.body.test_fast_joints import _rotations, smplx_output


def _smplx_vertices(model, betas, rot):
    return smplx_output(model, betas, rot).vertices


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
