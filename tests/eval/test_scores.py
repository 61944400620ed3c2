"""Tests of the distribution scores (energy score, ball coverage), the right-person rule and
their pooling in the protocol and the report (docs/method.md §6 "Scores", "Right person")."""
import math

import numpy as np
import pytest
import torch

from eval.metrics import (COCO17_HIPS, ball_coverage, center_on_mid_hip, energy_score,
                          right_person)
from eval.protocol import (CALIBRATION_Q, Collected, consistency, distribution_scores,
                           heatmap_distances)
from eval.report import _occluded_right_person, _weighted, summarize

# ---------------------------------------------------------------- energy score


def oracle_energy(samples: np.ndarray, truth: np.ndarray) -> float:
    """The unbiased energy score by a plain double loop (float64)."""
    m = len(samples)
    accuracy = sum(np.linalg.norm(x - truth) for x in samples) / m
    pairs = sum(np.linalg.norm(samples[i] - samples[j])
                for i in range(m) for j in range(m) if i != j)
    return accuracy - pairs / (2 * m * (m - 1))


def test_energy_score_hand_cases():
    x = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]], dtype=torch.float64)
    # accuracy (4 + 3 + 1) / 3; ordered pairs 2 (1 + 3 + 2) = 12 over 2·3·2 = 12 → 1
    assert float(energy_score(x, torch.tensor([4.0, 0, 0], dtype=torch.float64))) == \
        pytest.approx(8 / 3 - 1)
    # two samples 5 apart, truth on one of them: accuracy 2.5, sharpness 10 / 4 → 0
    two = torch.tensor([[0.0, 0, 0], [3, 4, 0]])
    assert float(energy_score(two, torch.zeros(3))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 samples"):
        energy_score(two[:1], torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_energy_score_matches_a_double_loop_oracle(dtype):
    rng = np.random.default_rng(5)
    samples = rng.normal(size=(2, 3, 40, 3)) * [0.05, 0.2, 0.01]  # close samples: float32 care
    truth = rng.normal(size=(2, 3, 3)) * 0.1
    got = energy_score(torch.from_numpy(samples).to(dtype), torch.from_numpy(truth).to(dtype))
    assert got.shape == (2, 3) and got.dtype == dtype
    expected = [[oracle_energy(samples[b, j], truth[b, j]) for j in range(3)] for b in range(2)]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(got.double().numpy(), expected, atol=tol)


def test_energy_score_is_unbiased_and_minimised_by_the_true_distribution():
    """Truth and forecasts are 3D Gaussians. The true forecast's expected score is 2/√π (half
    the mean distance of two independent N(0, I) points) for any number of samples, which a
    1/M² pair weight would miss at M = 2; every other forecast scores worse on average, by more
    than 4 standard errors of the paired difference."""
    g = torch.Generator().manual_seed(0)
    n, m = 4000, 50
    truth = torch.randn(n, 3, generator=g, dtype=torch.float64)
    for size in (2, m):
        es = energy_score(torch.randn(n, size, 3, generator=g, dtype=torch.float64),
                          torch.randn(n, 3, generator=g, dtype=torch.float64))
        assert abs(float(es.mean()) - 2 / math.sqrt(math.pi)) < 4 * float(es.std()) / \
            math.sqrt(len(es))
    noise = torch.randn(n, m, 3, generator=g, dtype=torch.float64)
    true_es = energy_score(noise, truth)
    for wrong in (0.5 * noise, 2.0 * noise, noise + 0.5, 1.3 * noise + 0.2):
        diff = energy_score(wrong, truth) - true_es
        assert float(diff.mean()) > 4 * float(diff.std()) / math.sqrt(n)


# ---------------------------------------------------------------- calibration


def test_ball_coverage_hand_case():
    # mean 0; distances 1, 1, 2, 2: 50th percentile 1.5 (interpolated), 90th 2
    samples = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 2, 0], [0, -2, 0]])
    truths = torch.tensor([[1.4, 0, 0], [0, 1.6, 0], [0, 0, 2.05]])
    got = ball_coverage(samples.expand(3, 4, 3), truths, (50, 90))
    assert got.tolist() == [[True, False, False], [True, True, False]]
    boundary = ball_coverage(samples, torch.tensor([0.0, 0, 1.5]), (50,))
    assert boundary.tolist() == [True]  # the sphere belongs to the region


def _coverage(scale: float, seed: int, n: int = 4000, m: int = 99) -> torch.Tensor:
    """(Q, n) coverage of truths N(0, I) by m samples N(0, scale² I), per case."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(n, 3, generator=g, dtype=torch.float64)
    samples = scale * torch.randn(n, m, 3, generator=g, dtype=torch.float64)
    return ball_coverage(samples, truth, (50, 90)).double()


def test_ball_coverage_is_q_when_calibrated_and_moves_with_the_dispersion():
    """Same distribution: within 3 binomial standard errors of q, with 999 samples so that the
    O(1/M) shortfall of docs/method.md §6 (≈ 1 point at M = 99) stays ≤ 0.2 points, below
    0.5 SE; twice the spread covers more, half the spread less, both by more than 10 SE."""
    n = 4000
    calibrated = _coverage(1.0, 1, m=999)
    for qi, q in enumerate((0.5, 0.9)):
        se = math.sqrt(q * (1 - q) / n)
        assert abs(float(calibrated[qi].mean()) - q) < 3 * se
        assert float(_coverage(2.0, 2)[qi].mean()) > q + 10 * se
        assert float(_coverage(0.5, 3)[qi].mean()) < q - 10 * se


# ---------------------------------------------------------------- right person


def test_right_person_median_of_visible_joints_against_the_box():
    gt = torch.zeros(4, 4, 2)
    det = torch.zeros(4, 4, 2)
    visible = torch.ones(4, 4, dtype=torch.bool)
    det[0, :, 0] = torch.tensor([1.0, 2.0, 60.0, 90.0])  # median 31 px > 25.6: wrong
    det[1, :, 0] = torch.tensor([1.0, 2.0, 3.0, 90.0])  # one blunder, median 2.5: right
    visible[1, 3] = False
    det[2, :2, 0] = torch.tensor([20.0, 32.0])  # median of two visible joints: 26 (not 20)
    visible[2, 2:] = False
    visible[3] = False  # nothing visible: not counted as right
    assert right_person(det, gt, visible, 256.0).tolist() == [False, True, False, False]
    wider = right_person(det, gt, visible, 256.0, fraction=0.11)  # 28.2 px
    assert wider.tolist() == [False, True, True, False]


def test_consistency_pools_the_detector_and_the_right_person_crops():
    gt = torch.zeros(2, 17, 2)
    det = torch.full((2, 17, 2), 3.0)  # crop 0: 3√2 px off, right person
    det[1] = 40.0  # crop 1: the other person, 40√2 px off
    coco = torch.zeros(2, 3, 17, 2)
    coco[:, 0] = 4.0  # the mode 4√2 px off, samples exact
    visible = torch.ones(2, 17, dtype=torch.bool)
    visible[0, 10:] = False  # 10 visible joints in crop 0, 17 in crop 1
    got = Collected()
    consistency(got, coco, det, gt, visible, right_person(det, gt, visible, 256))
    assert got.right_crops == 1
    (mean, count), = got.kp2d_detector
    assert count == 27 and mean == pytest.approx(math.sqrt(2) * (10 * 3 + 17 * 40) / 27)
    assert got.kp2d_right["detector"] == [(pytest.approx(3 * math.sqrt(2)), 10)]
    assert got.kp2d_right["mode"] == [(pytest.approx(4 * math.sqrt(2)), 10)]
    assert got.kp2d_right["samples"] == [(0.0, 20)]
    assert got.kp2d_mode == [(pytest.approx(4 * math.sqrt(2)), 27)]


def test_heatmap_distances_split_w1_and_the_2d_coverage_by_crop_and_set():
    """Two crops, the second a wrong-person one; joints 3 and 5 occluded in crop 0, joint 5 in
    crop 1. The hypotheses sit on the truth (covered), the heatmap samples 10 px beside it
    (not covered, W1 10 px); in crop 1 the hypotheses follow another body 30 px off."""
    rng = np.random.default_rng(0)
    ring = torch.from_numpy(rng.normal(size=(20, 2)))  # a cloud around 0, spread ≈ 1 px
    gt = torch.zeros(2, 17, 2, dtype=torch.float64)
    hyp = ring[None, :, None].expand(2, 20, 17, 2).clone()
    hyp[1] += 30.0
    heat = (ring[None, None] + torch.tensor([10.0, 0.0], dtype=torch.float64)).expand(
        2, 17, 20, 2).clone()
    heat = torch.cat([heat, heat], 2)  # M = 40 ≥ N = 20
    occluded = torch.zeros(2, 17, dtype=torch.bool)
    occluded[0, [3, 5]] = True
    occluded[1, 5] = True
    got = Collected()
    heatmap_distances(got, hyp, heat, gt, occluded, torch.tensor([True, False]),
                      np.random.default_rng(1))
    w1 = torch.cat(got.heatmap_w1)
    assert torch.cat(got.occluded_right).tolist() == [True, True, False]
    assert w1[:2].tolist() == pytest.approx([10.0, 10.0], abs=0.5)  # a shift of the same cloud
    covered = torch.cat(got.occluded_covered_2d)  # (3, set, Q)
    assert covered.shape == (3, 2, len(CALIBRATION_Q))
    assert covered[:2, 0].all() and not covered[:, 1].any() and not covered[2].any()
    # an exact model: the heatmap samples' mean distance to the truth (the cloud shifted 10 px)
    exact = torch.cat(got.heatmap_w1_exact)
    expected = float((ring + torch.tensor([10.0, 0.0], dtype=torch.float64)).norm(dim=-1).mean())
    assert exact.tolist() == pytest.approx([expected] * 3)
    out = _occluded_right_person(got, w1)
    assert out["heatmap_w1_exact_model_px"] == pytest.approx({"all": expected,
                                                             "right_person": expected})
    assert out["heatmap_w1_right_person_joints"] == 2
    assert out["heatmap_w1_right_person_px"] == pytest.approx(float(w1[:2].mean()))
    right, every = out["coverage_2d_occluded"]["right_person"], out["coverage_2d_occluded"]["all"]
    assert right["hypotheses"] == {"q50": 1.0, "q90": 1.0}
    assert every["hypotheses"]["q90"] == pytest.approx(2 / 3)
    assert right["heatmap"] == every["heatmap"] == {"q50": 0.0, "q90": 0.0}


# ---------------------------------------------------------------- protocol and report


def test_distribution_scores_ignore_the_camera_and_split_by_visibility():
    """Scores per (image, joint) on the mid-hip of the random hypotheses only (slot 0, the mode,
    is far off and changes nothing): a translated cloud scores the same, and the summary pools
    visible and invisible pairs apart."""
    rng = np.random.default_rng(7)
    truth = torch.from_numpy(rng.normal(size=(2, 17, 3)))
    samples = truth[:, None] + 0.01 * torch.from_numpy(rng.normal(size=(2, 31, 17, 3)))
    samples[:, 0] = 5.0 * torch.from_numpy(rng.normal(size=(2, 17, 3)))
    visible = torch.zeros(2, 17, dtype=torch.bool)
    visible[:, :5] = True
    got, moved = Collected(), Collected()
    distribution_scores(got, samples, truth, visible)
    distribution_scores(moved, samples + torch.tensor([0.3, -2.0, 5.0]), truth - 1.0, visible)
    torch.testing.assert_close(got.energy[0], moved.energy[0])
    x = center_on_mid_hip(samples)[0, 1:, 3].numpy()
    y = center_on_mid_hip(truth)[0, 3].numpy()
    assert float(got.energy[0][0, 3]) == pytest.approx(1000 * oracle_energy(x, y))
    assert got.covered[0].shape == (2, len(CALIBRATION_Q), 17)
    assert torch.allclose(center_on_mid_hip(truth)[..., list(COCO17_HIPS), :].mean(-2),
                          torch.zeros(2, 3, dtype=torch.float64))

    got.errors["mpjpe"] = [torch.zeros(2, 31)]
    scores = summarize(got, 31, [])
    energy = got.energy[0]
    assert scores["energy_score_mm"]["visible"] == pytest.approx(float(energy[:, :5].mean()))
    assert scores["energy_score_mm"]["invisible"] == pytest.approx(float(energy[:, 5:].mean()))
    for i, q in enumerate(CALIBRATION_Q):
        part = scores["calibration"][f"q{q}"]
        assert part["visible"] == pytest.approx(float(got.covered[0][:, i, :5].double().mean()))
        assert 0.0 <= part["invisible"] <= 1.0


def test_pooling_skips_batches_without_a_count():
    """A batch without a selected joint (e.g. no right-person crop) yields (NaN, 0): it must not
    turn the pooled mean into NaN."""
    assert _weighted([(2.0, 1), (float("nan"), 0), (5.0, 2)]) == 4.0
    assert math.isnan(_weighted([(float("nan"), 0)]))
