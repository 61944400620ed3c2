"""Tests of body/render.py against hand-computed cases: shading, blending, the side view turn and
the framing camera."""
import numpy as np

from body.render import AMBIENT, LIGHT, blend_meshes, face_normals, fit_camera, render_side, \
    side_view

K = np.array([[20.0, 0, 20], [0, 20.0, 15], [0, 0, 1]])


def square(z: float, half: float = 0.5):
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_face_normals_by_hand():
    v, f = square(2.0)
    np.testing.assert_allclose(np.abs(face_normals(v, f)), [[0, 0, 1], [0, 0, 1]])


def test_blend_a_square_facing_the_camera():
    """A square at z = 2 of side 1 covers u, v in [15, 25) × [10, 20) (20 px / m at z = 2):
    there the colour × (ambient + (1 − ambient)·|n·l|) blended with alpha, elsewhere the image."""
    image = np.full((30, 40, 3), 0.2)
    out = blend_meshes(image, [square(2.0)], K, [(1.0, 0.5, 0.0)], alpha=0.6)
    shade = AMBIENT + (1 - AMBIENT) * abs(LIGHT[2])
    inside = 0.4 * 0.2 + 0.6 * shade * np.array([1.0, 0.5, 0.0])
    np.testing.assert_allclose(out[10:20, 15:25], np.broadcast_to(inside, (10, 10, 3)))
    outside = np.ones((30, 40), bool)
    outside[10:20, 15:25] = False
    np.testing.assert_allclose(out[outside], 0.2)
    # uint8 images are read as 0–255
    np.testing.assert_allclose(blend_meshes(np.full((30, 40, 3), 51, np.uint8), [square(2.0)], K,
                                            [(1.0, 0.5, 0.0)], alpha=0.6), out)


def test_nearer_mesh_hides_the_farther_one():
    out = blend_meshes(np.zeros((30, 40, 3)), [square(4.0, 2.0), square(2.0)], K,
                       [(1, 0, 0), (0, 0, 1)], alpha=1.0)
    assert out[15, 20, 2] > 0 and out[15, 20, 0] == 0  # the nearer (blue) square in the middle
    assert out[15, 12, 0] > 0 and out[15, 12, 2] == 0  # the farther (red) one around it


def test_side_view_turns_depth_into_left_right():
    pivot = np.array([0.1, 0.2, 3.0])
    pts = pivot + np.array([[0, 0, -1.0], [0, 0, 1.0], [1.0, 0, 0], [0, 0.5, 0]])
    turned = side_view(pts, pivot)
    # nearer the camera → left (−x), farther → right, right → farther; vertical unchanged
    np.testing.assert_allclose(turned - pivot, [[-1, 0, 0], [1, 0, 0], [0, 0, -1], [0, 0.5, 0]],
                               atol=1e-12)


def test_fit_camera_frames_the_points():
    pts = np.random.default_rng(0).normal(size=(50, 3)) * [0.3, 0.8, 0.2] + [0.5, 0, 4]
    k = fit_camera(pts, 100, 80, margin=0.1)
    uv = pts @ k.T
    uv = uv[:, :2] / uv[:, 2:]
    assert uv[:, 0].min() >= 10 - 1e-9 and uv[:, 0].max() <= 90 + 1e-9
    assert uv[:, 1].min() >= 8 - 1e-9 and uv[:, 1].max() <= 72 + 1e-9
    # one axis fills its span: the framing is as large as the margins allow
    assert np.isclose(np.ptp(uv[:, 0]), 80) or np.isclose(np.ptp(uv[:, 1]), 64)
    np.testing.assert_allclose([(uv[:, 0].min() + uv[:, 0].max()) / 2,
                                (uv[:, 1].min() + uv[:, 1].max()) / 2], [50, 40])


def test_render_side_draws_on_a_plain_background():
    v, f = square(3.0)
    box = (np.concatenate([v, v + [0, 0, 0.5]]), np.concatenate([f, f + 4]))
    out = render_side([box], np.array([0, 0, 3.25]), 64, 48, [(0, 0, 1)])
    assert out.shape == (48, 64, 3)
    assert (out[0, 0] == 1).all()  # the background
    assert (out[..., 0] < 1).any()  # something drawn
