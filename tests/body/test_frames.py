"""body/frames.py: the world ↔ camera change of frame of a body's root (orient, transl)."""
import numpy as np
from scipy.spatial.transform import Rotation

from body.frames import camera_from_world, world_from_camera


def _place(orient: np.ndarray, transl: np.ndarray, j0: np.ndarray, x: np.ndarray) -> np.ndarray:
    """smplx's rule for a rest-pose point x: rotate about J0, then translate."""
    return np.einsum("nij,nj->ni", Rotation.from_rotvec(orient).as_matrix(), x - j0) + j0 + transl


def test_hand_case_quarter_turn_about_z():
    ext = np.eye(4)
    ext[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    ext[:3, 3] = [0, 0, 5]
    j0 = np.array([[0.0, 1.0, 0.0]])
    orient, transl = camera_from_world(np.zeros((1, 3)), np.array([[1.0, 0, 0]]), j0, ext[None])
    # root at J0 + t_w = (1, 1, 0) in the world → R·(1, 1, 0) + t = (-1, 1, 5); minus J0
    np.testing.assert_allclose(transl, [[-1.0, 0.0, 5.0]], atol=1e-12)
    np.testing.assert_allclose(orient, [[0.0, 0.0, np.pi / 2]], atol=1e-12)


def test_camera_body_is_the_world_body_seen_through_the_extrinsic_and_back():
    rng = np.random.default_rng(3)
    n = 5
    orient_w, transl_w = rng.normal(0, 1, (n, 3)), rng.normal(0, 2, (n, 3))
    j0, x = rng.normal(0, 0.5, (n, 3)), rng.normal(0, 1, (n, 3))
    ext = np.eye(4)
    ext[:3, :3] = Rotation.random(random_state=4).as_matrix()
    ext[:3, 3] = [0.3, -0.2, 6.0]
    orient_c, transl_c = camera_from_world(orient_w, transl_w, j0, np.repeat(ext[None], n, 0))
    seen = _place(orient_w, transl_w, j0, x) @ ext[:3, :3].T + ext[:3, 3]
    np.testing.assert_allclose(_place(orient_c, transl_c, j0, x), seen, atol=1e-12)
    back_orient, back_transl = world_from_camera(orient_c, transl_c, j0, ext)
    np.testing.assert_allclose(back_transl, transl_w, atol=1e-12)
    np.testing.assert_allclose(Rotation.from_rotvec(back_orient).as_matrix(),
                               Rotation.from_rotvec(orient_w).as_matrix(), atol=1e-12)
