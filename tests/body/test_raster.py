"""Tests of body/raster.py: a brute-force reference, hand-computed rectangles, watertightness,
perspective-correct depth, the near plane, tie rules and shading."""
import numpy as np
import pytest
from scipy.spatial import ConvexHull

from body import raster
from body.raster import project, rasterize

W, H = 40, 30
# dyadic focal length and centre: points built from pixel coordinates project back exactly
K = np.array([[64.0, 0.0, 20.0], [0.0, 64.0, 15.0], [0.0, 0.0, 1.0]])


def unproject(u, v, z, K=K) -> np.ndarray:
    """Camera-frame points (N,3) seen at pixel coordinates (u, v) at depth z."""
    u, v, z = np.broadcast_arrays(*(np.asarray(a, float) for a in (u, v, z)))
    return np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)


def square(u0, u1, v0, v1, z, flip=False):
    """A camera-facing rectangle [u0, u1] × [v0, v1] px at depth z, as two triangles."""
    vertices = unproject([u0, u1, u1, u0], [v0, v0, v1, v1], z)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return vertices, faces[:, ::-1] if flip else faces


def reference(meshes, K, width, height, near=0.05):
    """Brute force: every pixel against every triangle, barycentric test, nearest wins."""
    tris = []
    for m, (vertices, faces) in enumerate(meshes):
        p = project(vertices, K)
        for k, face in enumerate(faces):
            if p[face, 2].min() >= near:
                tris.append((m, k, *p[face].ravel().tolist()))
    depth = np.full((height, width), np.inf)
    mesh = np.full((height, width), -1)
    face = np.full((height, width), -1)
    for i in range(height):
        for j in range(width):
            for m, k, x0, y0, z0, x1, y1, z1, x2, y2, z2 in tris:
                d = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
                if d == 0:
                    continue
                l0 = ((y1 - y2) * (j - x2) + (x2 - x1) * (i - y2)) / d
                l1 = ((y2 - y0) * (j - x2) + (x0 - x2) * (i - y2)) / d
                l2 = 1.0 - l0 - l1
                if min(l0, l1, l2) < 0:
                    continue
                z = 1.0 / (l0 / z0 + l1 / z1 + l2 / z2)
                if z < depth[i, j]:
                    depth[i, j], mesh[i, j], face[i, j] = z, m, k
    return depth, mesh, face


def random_meshes(rng, count=3, n_faces=20):
    """Random triangles, some over the image border, at random tilted depths that interpenetrate."""
    meshes = []
    for _ in range(count):
        centre = rng.uniform([-5, -5], [W + 5, H + 5], (n_faces, 1, 2))
        uv = (centre + rng.uniform(-12, 12, (n_faces, 3, 2))).reshape(-1, 2)
        z = (rng.uniform(1, 5, (n_faces, 1)) + rng.uniform(-0.5, 0.5, (n_faces, 3))).ravel()
        meshes.append((unproject(uv[:, 0], uv[:, 1], z), np.arange(3 * n_faces).reshape(-1, 3)))
    return meshes


def test_project_by_hand():
    uvz = project(np.array([[0.5, -0.25, 2.0]]), K)
    np.testing.assert_allclose(uvz, [[64 * 0.25 + 20, 64 * -0.125 + 15, 2.0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed, monkeypatch):
    meshes = random_meshes(np.random.default_rng(seed))
    r = rasterize(meshes, K, W, H)
    depth, mesh, face = reference(meshes, K, W, H)
    assert 0.3 < r.covered.mean() < 0.95 and set(np.unique(r.mesh)) == {-1, 0, 1, 2}
    np.testing.assert_array_equal(r.mesh, mesh)
    np.testing.assert_array_equal(r.face, face)
    np.testing.assert_allclose(r.depth, depth, rtol=1e-6)
    assert r.depth.dtype == np.float32 and r.mesh.dtype == np.int16 and r.face.dtype == np.int32
    # tiny chunks (one triangle per chunk in every bucket) change nothing
    monkeypatch.setattr(raster, "_CHUNK", 1)
    small = rasterize(meshes, K, W, H)
    for name in ("depth", "mesh", "face"):
        np.testing.assert_array_equal(getattr(small, name), getattr(r, name))


@pytest.mark.parametrize("offset", [0.5, 0.0])  # edges between pixel centres, or on them
@pytest.mark.parametrize("flip", [False, True])
def test_square_covers_hand_computed_rectangle(offset, flip):
    # [4.5, 32.5] × [9.5, 23.5] holds centres 5..32 × 10..23; so does [5, 33) × [10, 24)
    # (top-left rule: centres on the left/top edges count, on the right/bottom ones do not)
    r = rasterize([square(4.5 + offset, 32.5 + offset, 9.5 + offset, 23.5 + offset, 2.0, flip)],
                  K, W, H)
    expected = np.zeros((H, W), bool)
    expected[10:24, 5:33] = True
    np.testing.assert_array_equal(r.covered, expected)
    np.testing.assert_array_equal(r.depth[expected], 2.0)
    assert np.isinf(r.depth[~expected]).all() and (r.face[~expected] == -1).all()
    assert set(np.unique(r.face[expected])) == {0, 1}


def test_nearer_square_wins_whatever_the_order():
    near, far = square(4.5, 24.5, 5.5, 20.5, 2.0), square(14.5, 34.5, 10.5, 25.5, 3.0)
    for meshes, near_id in (([near, far], 0), ([far, near], 1)):
        r = rasterize(meshes, K, W, H)
        assert (r.mesh[6:21, 5:25] == near_id).all()  # all of the near square, overlap included
        np.testing.assert_array_equal(r.depth[6:21, 5:25], 2.0)
        assert (r.mesh[21:26, 15:35] == 1 - near_id).all()
        assert (r.mesh[11:21, 25:35] == 1 - near_id).all()
        np.testing.assert_array_equal(r.depth[11:26, 25:35], 3.0)


def test_exact_ties_go_to_the_lower_mesh_then_face():
    v, f = square(4.5, 24.5, 5.5, 20.5, 2.0)
    r = rasterize([(v, f[::-1]), (v, f)], K, W, H)
    assert (r.mesh[r.covered] == 0).all()
    np.testing.assert_array_equal(np.unique(r.face[r.covered]), [0, 1])
    twice = np.concatenate([f, f])  # every face drawn twice
    r = rasterize([(v, twice)], K, W, H)
    np.testing.assert_array_equal(np.unique(r.face[r.covered]), [0, 1])


@pytest.mark.parametrize("jitter", [0.0, 0.6])
def test_tessellated_plane_covers_each_centre_exactly_once(jitter):
    # a grid on pixel centres (jitter 0: every diagonal and vertex hits centres exactly), or with
    # interior vertices jittered; faces in random order and random winding
    rng = np.random.default_rng(3)
    gu, gv = np.meshgrid(np.arange(3.0, 37.0, 3.0), np.arange(2.0, 29.0, 3.0))
    interior = (gu > gu.min()) & (gu < gu.max()) & (gv > gv.min()) & (gv < gv.max())
    gu = gu + jitter * interior * rng.uniform(-1, 1, gu.shape)
    gv = gv + jitter * interior * rng.uniform(-1, 1, gv.shape)
    rows, cols = gu.shape
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    split = rng.random(a.shape) < 0.5
    faces = np.concatenate([np.where(split[..., None], np.stack([a, b, c], -1),
                                     np.stack([a, b, d], -1)).reshape(-1, 3),
                            np.where(split[..., None], np.stack([a, c, d], -1),
                                     np.stack([b, c, d], -1)).reshape(-1, 3)])
    faces = rng.permuted(faces[rng.permutation(len(faces))], axis=1)
    vertices = unproject(gu.ravel(), gv.ravel(), 2.0)
    u, v, inv_z, f, _, _ = raster._gather([(vertices, faces)], K, 0.05)
    pix, _, _ = raster._fragments(u, v, inv_z, f, W, H)
    count = np.bincount(pix[pix < W * H], minlength=W * H).reshape(H, W)  # not the spare pixel
    expected = np.zeros((H, W), int)
    expected[2:26, 3:36] = 1  # grid [3, 36] × [2, 26]: centres [3, 36) × [2, 26) by top-left
    np.testing.assert_array_equal(count, expected)


def test_centre_on_a_shared_edge_belongs_to_exactly_one_side():
    # 1000 pairs of triangles sharing an edge through a pixel centre, at awkward (non-dyadic)
    # slopes and lengths, so the edge function at the centre is rounding noise; both triangles
    # must still agree on which side it lies
    rng = np.random.default_rng(4)
    n = 1000
    centre = rng.integers(3, [W - 3, H - 3], (n, 2)).astype(float)
    angle = rng.uniform(0, 2 * np.pi, n)
    d = np.stack([np.cos(angle), np.sin(angle)], 1)
    normal = d[:, ::-1] * [-1, 1]
    a = centre - rng.uniform(0.7, 2, (n, 1)) * d
    b = centre + rng.uniform(0.7, 2, (n, 1)) * d
    c1, c2 = centre + 1.5 * normal, centre - 1.5 * normal
    uv = np.stack([a, b, c1, c2], 1).reshape(-1, 2)
    vertices = unproject(uv[:, 0], uv[:, 1], rng.uniform(1, 3, 4 * n))
    base = 4 * np.arange(n)[:, None]
    faces = np.concatenate([base + [0, 1, 2], base + [1, 0, 3]])
    faces = rng.permuted(faces, axis=1)  # random corner order and winding
    u, v, inv_z, f, _, face_id = raster._gather([(vertices, faces)], K, 0.05)
    pix, _, tri = raster._fragments(u, v, inv_z, f, W, H)
    pair = face_id[tri] % n
    target = (centre[:, 1] * W + centre[:, 0]).astype(int)
    hits = np.bincount(pair[pix == target[pair]], minlength=n)
    np.testing.assert_array_equal(hits, 1)


def test_closed_sphere_has_no_gaps():
    n, radius, zc = 2000, 1.0, 4.0
    k = np.arange(n) + 0.5
    theta, phi = np.arccos(1 - 2 * k / n), np.pi * (1 + 5 ** 0.5) * k
    points = radius * np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                                np.cos(theta)], axis=1)
    hull = ConvexHull(points)
    Ks = np.array([[150.0, 0.0, 60.3], [0.0, 150.0, 50.2], [0.0, 0.0, 1.0]])
    r = rasterize([(points + [0, 0, zc], hull.simplices)], Ks, 120, 100)
    # the silhouette of a sphere of radius s at distance zc is a disk of radius f·s/√(zc² − s²);
    # the polytope lies between its inscribed and circumscribed spheres
    inner = -hull.equations[:, 3].max()
    ii, jj = np.mgrid[:100, :120]
    dist = np.hypot(jj - 60.3, ii - 50.2)
    inside = dist < 150 * inner / np.sqrt(zc ** 2 - inner ** 2) - 0.5
    outside = dist > 150 * radius / np.sqrt(zc ** 2 - radius ** 2) + 0.5
    assert inside.sum() > 4000
    assert r.covered[inside].all() and not r.covered[outside].any()
    # a hole in the front surface would show the back one, beyond the centre
    assert np.isfinite(r.depth[r.covered]).all() and (r.depth[r.covered] < zc).all()
    assert abs(r.depth[50, 60] - (zc - radius)) < radius - inner + 1e-6


def test_perspective_correct_depth_on_tilted_plane():
    normal, point = np.array([0.6, -0.8, 1.0]), np.array([0.0, 0.0, 3.0])
    corners_u, corners_v = np.array([-5.0, 45.0, 45.0, -5.0]), np.array([-5.0, -5.0, 35.0, 35.0])
    rays = unproject(corners_u, corners_v, 1.0)
    vertices = rays * (normal @ point / (rays @ normal))[:, None]  # corners on the plane
    r = rasterize([(vertices, np.array([[0, 1, 2], [0, 2, 3]]))], K, W, H)
    assert r.covered.all()
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    pixel_rays = unproject(jj.ravel(), ii.ravel(), 1.0)
    analytic = (normal @ point / (pixel_rays @ normal)).reshape(H, W)
    assert analytic.max() / analytic.min() > 1.5  # steep enough that affine z would be far off
    np.testing.assert_allclose(r.depth, analytic, rtol=1e-6)


def test_faces_behind_the_near_plane_are_dropped():
    front = unproject([5.0, 15.0, 5.0], [5.0, 5.0, 15.0], 2.0)
    grazing = unproject([20.0, 30.0, 20.0], [5.0, 5.0, 15.0], [0.01, 2.0, 2.0])
    behind = np.array([[1.0, 1.0, -2.0], [-1.0, 1.0, -2.0], [0.0, -1.0, -2.0]])
    vertices = np.concatenate([front, grazing, behind])
    faces = np.arange(9).reshape(3, 3)
    r = rasterize([(vertices, faces)], K, W, H, near=0.05)
    np.testing.assert_array_equal(np.unique(r.face), [-1, 0])
    r = rasterize([(vertices, faces)], K, W, H, near=0.005)
    np.testing.assert_array_equal(np.unique(r.face), [-1, 0, 1])


def test_full_image_occluder_and_empty_scenes():
    occluder = square(-2000.0, 2000.0, -1500.0, 1500.0, 5.0)
    small = square(10.5, 20.5, 10.5, 20.5, 2.0)
    r = rasterize([small, occluder], K, W, H)
    assert r.covered.all()
    assert (r.mesh[11:21, 11:21] == 0).all() and (r.mesh == 1).sum() == W * H - 100
    np.testing.assert_array_equal(r.depth[r.mesh == 1], 5.0)
    offscreen = square(50.5, 60.5, 10.5, 20.5, 2.0)
    for meshes in ([], [offscreen], [(np.zeros((0, 3)), np.zeros((0, 3), int))]):
        r = rasterize(meshes, K, W, H)
        assert r.depth.shape == (H, W) and not r.covered.any() and np.isinf(r.depth).all()
