"""Tests of body/rotations.py against scipy's Rotation, hand-computed cases and autograd."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from body.rotations import (axis_angle_to_matrix, axis_angle_to_rot6d, matrix_to_axis_angle,
                            matrix_to_rot6d, rot6d_to_axis_angle, rot6d_to_matrix)


def random_axis_angle(rng: np.random.Generator, n: int, angles: np.ndarray | None = None):
    """n axis-angle vectors with random axes and angles uniform in [0, π) unless given."""
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    if angles is None:
        angles = rng.uniform(0, math.pi, size=n)
    return axes * np.broadcast_to(angles, (n,))[:, None]


def test_axis_angle_to_matrix_matches_scipy():
    aa = random_axis_angle(np.random.default_rng(0), 200)
    R = axis_angle_to_matrix(torch.from_numpy(aa))
    np.testing.assert_allclose(R.numpy(), Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)


def test_matrix_to_axis_angle_matches_scipy():
    R = Rotation.random(200, random_state=1)
    aa = matrix_to_axis_angle(torch.from_numpy(R.as_matrix()))
    np.testing.assert_allclose(aa.numpy(), R.as_rotvec(), atol=1e-10)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-8, 1e-4])
def test_small_angles_are_exact(angle):
    aa = random_axis_angle(np.random.default_rng(2), 16, np.array(angle))
    R = axis_angle_to_matrix(torch.from_numpy(aa))
    R_ref = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_allclose(R.numpy(), R_ref, rtol=1e-14, atol=1e-15)
    # the off-diagonal entries carry the angle: the error is relative to its size
    back = matrix_to_axis_angle(torch.from_numpy(R_ref)).numpy()
    np.testing.assert_allclose(back, aa, rtol=0, atol=1e-9 * angle)


@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_angles_near_pi(delta):
    aa = random_axis_angle(np.random.default_rng(3), 32, np.array(math.pi - delta))
    R_ref = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(torch.from_numpy(aa)).numpy(), R_ref,
                               atol=1e-12)
    back = matrix_to_axis_angle(torch.from_numpy(R_ref)).numpy()
    np.testing.assert_allclose(back, aa, atol=1e-7)


def test_angle_pi_round_trips_up_to_axis_sign():
    aa = random_axis_angle(np.random.default_rng(4), 32, np.array(math.pi))
    R = axis_angle_to_matrix(torch.from_numpy(aa))
    back = matrix_to_axis_angle(R)
    np.testing.assert_allclose(back.norm(dim=-1).numpy(), math.pi, atol=1e-12)
    np.testing.assert_allclose(np.abs((back.numpy() * aa).sum(-1)), math.pi**2, rtol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(back).numpy(), R.numpy(), atol=1e-12)


def test_rot6d_layout_is_first_two_rows():
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90° about z
    assert matrix_to_rot6d(R).tolist() == [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]
    aa = torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64)
    np.testing.assert_allclose(axis_angle_to_rot6d(aa).numpy(), [0, -1, 0, 1, 0, 0], atol=1e-15)


def test_rot6d_of_rotation_decodes_exactly():
    R = torch.from_numpy(Rotation.random(100, random_state=5).as_matrix())
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(R)).numpy(), R.numpy(), atol=1e-14)


def test_rot6d_decodes_random_vectors_by_gram_schmidt():
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(100, 6)))
    R = rot6d_to_matrix(x)
    eye = torch.eye(3, dtype=x.dtype).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(100, dtype=x.dtype))
    a1, a2 = x[:, :3], x[:, 3:]
    torch.testing.assert_close(R[:, 0], a1 / a1.norm(dim=-1, keepdim=True))  # row 1 ∥ a1
    assert ((R[:, 1] * a2).sum(-1) > 0).all()  # row 2 is on a2's side of row 1
    torch.testing.assert_close((R[:, 2] * a1).sum(-1), torch.zeros(100, dtype=x.dtype))
    torch.testing.assert_close((R[:, 2] * a2).sum(-1), torch.zeros(100, dtype=x.dtype))


def test_round_trips():
    aa = torch.from_numpy(random_axis_angle(np.random.default_rng(7), 100))
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa)
    torch.testing.assert_close(rot6d_to_axis_angle(axis_angle_to_rot6d(aa)), aa)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_leading_shapes_and_dtypes(dtype, atol):
    aa_np = random_axis_angle(np.random.default_rng(8), 24).reshape(2, 3, 4, 3)
    aa = torch.from_numpy(aa_np).to(dtype)
    R = axis_angle_to_matrix(aa)
    assert R.shape == (2, 3, 4, 3, 3) and R.dtype == dtype
    R_ref = Rotation.from_rotvec(aa_np.reshape(-1, 3)).as_matrix().reshape(2, 3, 4, 3, 3)
    np.testing.assert_allclose(R.double().numpy(), R_ref, atol=atol)
    x = matrix_to_rot6d(R)
    assert x.shape == (2, 3, 4, 6) and x.dtype == dtype
    assert rot6d_to_matrix(x).shape == (2, 3, 4, 3, 3)
    back = matrix_to_axis_angle(R)
    assert back.shape == (2, 3, 4, 3) and back.dtype == dtype
    np.testing.assert_allclose(back.double().numpy(), aa_np, atol=100 * atol)


def test_gradcheck_axis_angle_to_matrix_at_zero_and_random():
    rng = np.random.default_rng(9)
    aa = np.concatenate([np.zeros((1, 3)), 1e-5 * rng.normal(size=(1, 3)),
                         random_axis_angle(rng, 3)])
    aa = torch.from_numpy(aa).requires_grad_()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,))


def test_jacobian_at_zero_is_the_skew_basis():
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix,
                                             torch.zeros(3, dtype=torch.float64))
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1
        expected = torch.linalg.cross(e.expand(3, 3), torch.eye(3, dtype=torch.float64)).T
        torch.testing.assert_close(jac[..., k], expected)  # d(R v)/d aa_k = e_k × v


def test_gradcheck_rot6d_to_matrix():
    x = torch.from_numpy(np.random.default_rng(10).normal(size=(4, 6))).requires_grad_()
    assert torch.autograd.gradcheck(rot6d_to_matrix, (x,))


@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.7, math.pi - 1e-3])
def test_axis_angle_round_trip_has_identity_jacobian(angle):
    aa = torch.from_numpy(random_axis_angle(np.random.default_rng(11), 1, np.array(angle))[0])
    jac = torch.autograd.functional.jacobian(
        lambda v: matrix_to_axis_angle(axis_angle_to_matrix(v)), aa)
    assert torch.isfinite(jac).all()
    torch.testing.assert_close(jac, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
