"""Tests of preprocess/heatmaps.py: sampling law (chi-square), determinism, DARK-UDP decoding."""
import cv2
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from body.cameras import DetectorCrop
from preprocess.heatmaps import _gaussian_kernel, decode_dark_udp, row_uniforms, sample_heatmaps

H, W = 64, 48


def gaussian_map(u0: float, v0: float, sigma: float = 2.0, peak: float = 1.0) -> torch.Tensor:
    """(H, W) float32 Gaussian of the given peak centred at column u0, row v0."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                          torch.arange(W, dtype=torch.float64), indexing="ij")
    return (peak * torch.exp(-((u - u0)**2 + (v - v0)**2) / (2 * sigma**2))).float()


def noisy_blobs(rng: np.random.Generator, rows: int) -> torch.Tensor:
    """(rows, 17, H, W) noisy Gaussian blobs: values below 0.05 and negatives everywhere."""
    centres = rng.uniform([3, 3], [W - 4, H - 4], size=(rows, 17, 2))
    maps = torch.stack([torch.stack([gaussian_map(u, v, 3.0, 0.9) for u, v in row])
                        for row in centres])
    return maps + torch.from_numpy(rng.normal(0, 0.03, maps.shape)).float()


def pooled_chisquare(observed: np.ndarray, expected: np.ndarray) -> float:
    """p-value of the chi-square test after pooling bins (by increasing expectation) to ≥ 5."""
    order = np.argsort(expected)
    obs, exp = [], []
    o_acc = e_acc = 0.0
    for o, e in zip(observed[order], expected[order]):
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= 5:
            obs.append(o_acc)
            exp.append(e_acc)
            o_acc = e_acc = 0.0
    obs[-1] += o_acc
    exp[-1] += e_acc
    return chisquare(obs, exp).pvalue


# --- row_uniforms ----------------------------------------------------------------------------

def test_row_uniforms_shape_range_and_row_independence():
    block = row_uniforms(3, "bedlam", range(10), joints=17, samples=150)
    assert block.shape == (10, 17, 150) and block.dtype == np.float64
    assert block.min() >= 0 and block.max() < 1
    np.testing.assert_array_equal(row_uniforms(3, "bedlam", [5])[0], block[5])
    assert not np.array_equal(row_uniforms(4, "bedlam", [5])[0], block[5])
    assert not np.array_equal(row_uniforms(3, "agora", [5])[0], block[5])
    assert not np.array_equal(block[4], block[5])


# --- sample_heatmaps -------------------------------------------------------------------------

def test_sampling_law_chisquare():
    rng = np.random.default_rng(1)
    maps = torch.zeros(1, 6, H, W)
    maps[0, 0] = noisy_blobs(rng, 1)[0, 0]                             # blob + noise
    maps[0, 1] = torch.from_numpy(rng.uniform(-0.5, 1.0, (H, W)))     # a third below 0.05
    maps[0, 2] = 0.0                                                  # all zero -> uniform
    maps[0, 3] = torch.from_numpy(rng.uniform(-0.3, 0.049, (H, W)))   # all below -> uniform
    maps[0, 4] = torch.from_numpy(rng.uniform(0.0, 0.3, (H, W)))      # mostly kept
    maps[0, 5, 10, 20] = 0.6                                          # a single pixel
    samples = 200_000
    uniforms = torch.from_numpy(np.random.default_rng(2).random((1, 6, samples)))
    index = sample_heatmaps(maps, uniforms).index[0].numpy()

    for j in range(6):
        weights = maps[0, j].flatten().double().numpy()
        weights = np.where(weights >= 0.05, weights, 0.0)
        if weights.sum() == 0:
            weights = np.ones_like(weights)
        expected = samples * weights / weights.sum()
        observed = np.bincount(index[j], minlength=H * W)
        assert observed[expected == 0].sum() == 0, f"joint {j}: a discarded pixel was drawn"
        if (expected > 0).sum() > 1:
            assert pooled_chisquare(observed[expected > 0], expected[expected > 0]) > 1e-3
    assert (index[5] == 10 * W + 20).all()


def test_samples_sorted_dtypes_and_values():
    rng = np.random.default_rng(3)
    maps = noisy_blobs(rng, 3)
    uniforms = torch.from_numpy(row_uniforms(0, "test", range(3)))
    out = sample_heatmaps(maps, uniforms)
    assert out.index.shape == out.value.shape == (3, 17, 150)
    assert out.index.dtype == torch.int64 and out.value.dtype == torch.float32
    assert (out.index.diff(dim=-1) >= 0).all()
    assert out.index.min() >= 0 and out.index.max() < H * W
    torch.testing.assert_close(out.value, maps.flatten(-2).gather(-1, out.index), rtol=0, atol=0)
    assert (out.value >= 0.05).all()


def test_sampling_does_not_depend_on_the_batch():
    rng = np.random.default_rng(4)
    maps = noisy_blobs(rng, 6)
    maps[2, 5] = 0.0
    uniforms = torch.from_numpy(row_uniforms(7, "test", range(6)))
    full = sample_heatmaps(maps, uniforms).index
    for i in range(6):
        alone = sample_heatmaps(maps[i:i + 1], uniforms[i:i + 1]).index[0]
        assert torch.equal(alone, full[i])
    perm = torch.tensor([3, 0, 5, 1])
    assert torch.equal(sample_heatmaps(maps[perm], uniforms[perm]).index, full[perm])
    assert torch.equal(sample_heatmaps(maps[:2], uniforms[:2]).index, full[:2])


def test_uniform_at_the_top_of_the_range_stays_on_a_kept_pixel():
    maps = torch.zeros(1, 1, H, W)
    maps[0, 0, 3, 4] = 0.5  # the last pixel has weight zero
    uniforms = torch.tensor([[[0.0, np.nextafter(1.0, 0.0)]]], dtype=torch.float64)
    assert (sample_heatmaps(maps, uniforms).index == 3 * W + 4).all()


# --- decode_dark_udp -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [11, 13, 15])  # cv2 uses fixed tables up to 9
def test_blur_kernel_is_cv2s_default(size):
    np.testing.assert_allclose(_gaussian_kernel(size), cv2.getGaussianKernel(size, 0).ravel(),
                               rtol=1e-13, atol=0)


@pytest.mark.parametrize("centre", [(20.3, 31.7), (5.8, 50.2), (40.5, 12.05)])
def test_decode_recovers_subpixel_centre(centre):
    maps = gaussian_map(*centre, sigma=2.0, peak=0.8)[None, None]
    uv, conf = decode_dark_udp(maps)
    assert uv.shape == (1, 1, 2) and conf.shape == (1, 1)
    assert (uv[0, 0] - torch.tensor(centre)).abs().max() < 0.05
    u, v = (round(c) for c in centre)
    assert conf[0, 0] == maps[0, 0, v, u] == maps.max()


def test_decode_border_peak_gives_the_integer_argmax():
    maps = torch.zeros(1, 3, H, W)
    maps[0, 0] = gaussian_map(0.0, 30.0)
    maps[0, 1] = gaussian_map(47.0, 63.0)
    maps[0, 2, 0, 10] = 1.0  # a lone pixel at the top edge
    uv, conf = decode_dark_udp(maps)
    torch.testing.assert_close(uv[0], torch.tensor([[0.0, 30], [47, 63], [10, 0]]))
    torch.testing.assert_close(conf[0], torch.ones(3))


def test_decode_degenerate_maps_stay_on_the_argmax():
    maps = torch.zeros(1, 3, H, W)
    maps[0, 0, 20, 20] = 1.0  # blurred: a symmetric Gaussian, no offset
    maps[0, 1] = -0.1         # all negative: argmax at the first pixel
    maps[0, 2, 30, 10] = 1.0  # after clamping to 1e-10 far from the peak ...
    maps[0, 2, 30, 40] = 0.5  # ... a second, lower peak does not disturb the first
    uv, conf = decode_dark_udp(maps)
    assert torch.isfinite(uv).all()
    torch.testing.assert_close(uv[0], torch.tensor([[20.0, 20], [0, 0], [10, 30]]), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(conf[0], torch.tensor([1.0, -0.1, 1.0]))


def test_decode_offset_is_at_most_one_pixel():
    uv, _ = decode_dark_udp(noisy_blobs(np.random.default_rng(5), 4))
    maps = noisy_blobs(np.random.default_rng(5), 4)
    index = maps.flatten(-2).argmax(-1)
    assert ((uv - DetectorCrop.index_to_heatmap(index)).abs() <= 1).all()


def test_decode_refuses_heatmaps_of_another_grid():
    with pytest.raises(ValueError, match="64×48"):
        decode_dark_udp(torch.zeros(1, 17, 48, 64))


def test_decode_batched_equals_per_row():
    """Bit for bit: no batched matrix product whose summation order follows the batch."""
    maps = noisy_blobs(np.random.default_rng(6), 64)
    uv, conf = decode_dark_udp(maps)
    for i in range(64):
        uv_i, conf_i = decode_dark_udp(maps[i:i + 1])
        assert torch.equal(uv_i[0], uv[i]) and torch.equal(conf_i[0], conf[i])
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:7]
    assert torch.equal(decode_dark_udp(maps[perm])[0], uv[perm])


def test_dark_refinement_equals_a_full_blur_oracle():
    """Blurring only the 3 × 3 around the peak equals DARK on the fully blurred map (cv2)."""
    import cv2

    rng = np.random.default_rng(3)
    h, w = 64, 48
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.zeros((6, h, w), np.float32)
    for m in maps:
        for _ in range(3):
            cx, cy, s = rng.uniform(3, w - 4), rng.uniform(3, h - 4), rng.uniform(1.5, 4)
            m += rng.uniform(0.2, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    uv, _ = decode_dark_udp(torch.from_numpy(maps)[None])
    for j, m in enumerate(maps):
        blurred = cv2.GaussianBlur(m, (11, 11), 0, borderType=cv2.BORDER_CONSTANT)
        f = np.log(np.maximum(blurred.astype(np.float64), 1e-10))
        v, u = np.unravel_index(np.argmax(m), m.shape)
        dx, dy = (f[v, u + 1] - f[v, u - 1]) / 2, (f[v + 1, u] - f[v - 1, u]) / 2
        dxx, dyy = f[v, u + 1] - 2 * f[v, u] + f[v, u - 1], f[v + 1, u] - 2 * f[v, u] + f[v - 1, u]
        dxy = (f[v + 1, u + 1] - f[v + 1, u - 1] - f[v - 1, u + 1] + f[v - 1, u - 1]) / 4
        hessian = np.array([[dxx, dxy], [dxy, dyy]])
        expected = np.array([u, v]) - np.clip(np.linalg.solve(hessian, [dx, dy]), -1, 1)
        np.testing.assert_allclose(uv[0, j].numpy(), expected, atol=1e-4)
