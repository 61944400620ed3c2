"""train/losses.py: the IMQ kernel, the MMD loss and its targets, against hand computations and
loop-based float64 references."""
import pytest
import torch

from body.joints import COCO17_HIGHLY_ARTICULATED
from train.losses import imq_kernel, mmd_loss, mmd_sample_joints, mmd_targets

SCALES = (0.05, 0.20, 0.90)


# ---------------------------------------------------------------- kernel and MMD

def phi(p, q, scales=SCALES):
    """Paper Eq. 8 for one pair of points, in plain Python."""
    d2 = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2
    return sum(a * a / (a * a + d2) for a in scales)


def mmd_reference(pred, target, weight, unbiased):
    """Paper Eq. 4 by explicit loops over images, joints and sample pairs; the mean of w · MMD²
    over all (image, joint) pairs."""
    pred, target, weight = pred.tolist(), target.tolist(), weight.tolist()
    total = pairs = 0.0
    for b in range(len(pred)):
        for k in range(len(pred[b])):
            x, y = pred[b][k], target[b][k]
            n, m = len(x), len(y)
            if unbiased:
                xx = sum(phi(x[i], x[j]) for i in range(n) for j in range(n) if i != j)
                yy = sum(phi(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
                xx, yy = xx / (n * (n - 1)), yy / (m * (m - 1))
            else:
                xx = sum(phi(x[i], x[j]) for i in range(n) for j in range(n)) / n**2
                yy = sum(phi(y[i], y[j]) for i in range(m) for j in range(m)) / m**2
            xy = sum(phi(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
            total += weight[b][k] * (xx + yy - 2 * xy)
            pairs += 1
    return total / pairs


def test_imq_kernel_by_hand():
    a = torch.tensor([[0.0, 0.0], [0.1, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.3, 0.4]], dtype=torch.float64)
    k = imq_kernel(a, b)
    assert k.shape == (2, 1)
    expected0 = 0.0025 / (0.0025 + 0.25) + 0.04 / (0.04 + 0.25) + 0.81 / (0.81 + 0.25)
    d2 = 0.2**2 + 0.4**2
    expected1 = 0.0025 / (0.0025 + d2) + 0.04 / (0.04 + d2) + 0.81 / (0.81 + d2)
    torch.testing.assert_close(k[:, 0], torch.tensor([expected0, expected1], dtype=torch.float64))
    # coincident points: one per scale; other scales; leading dimensions broadcast
    assert imq_kernel(a, a)[0, 0].item() == pytest.approx(3.0)
    assert imq_kernel(a, b, scales=(1.0,))[0, 0].item() == pytest.approx(1 / 1.25)
    assert imq_kernel(torch.rand(4, 3, 5, 2), torch.rand(3, 7, 2)).shape == (4, 3, 5, 7)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_double_loop(unbiased):
    g = torch.Generator().manual_seed(3)
    pred = torch.rand(3, 17, 6, 2, generator=g, dtype=torch.float64) * 2 - 1
    target = torch.rand(3, 17, 5, 2, generator=g, dtype=torch.float64) * 0.6 - 0.3
    weight = torch.rand(3, 17, generator=g, dtype=torch.float64)
    weight[weight < 0.3] = 0
    value = mmd_loss(pred, target, weight, SCALES, unbiased=unbiased)
    assert value.shape == ()
    assert value.item() == pytest.approx(mmd_reference(pred, target, weight, unbiased), rel=1e-10)


def phi_d2(d2, scales=SCALES):
    return sum(a * a / (a * a + d2) for a in scales)


def test_mmd_is_the_mean_over_all_image_joint_pairs():
    """By hand: one joint of 17 has pred {(0, 0)} × 2 against target {(0.3, 0.4)} × 2
    (d² = 0.25), MMD² = 3 + 3 − 2φ(0.25) under both estimators; the other 16 pairs are 0, 8 of
    them with weight 0. Reference release: the mean over the 17 pairs (the old Σw·MMD/Σw gave
    the same value divided by 9)."""
    pred = torch.zeros(1, 17, 2, 2, dtype=torch.float64)
    target = torch.zeros(1, 17, 2, 2, dtype=torch.float64)
    target[0, 3] = torch.tensor([0.3, 0.4], dtype=torch.float64)
    weight = torch.ones(1, 17, dtype=torch.float64)
    weight[0, 8:] = 0
    expected = (6 - 2 * phi_d2(0.25)) / 17
    for unbiased in (True, False):
        value = mmd_loss(pred, target, weight, unbiased=unbiased)
        assert value.item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mmd_loss(pred[:, :, :1], target, weight)


def test_mmd_identical_sets_biased_is_zero_and_grows_with_separation():
    pts = torch.rand(2, 17, 25, 2) * 0.4
    weight = torch.ones(2, 17)
    assert mmd_loss(pts, pts.clone(), weight, unbiased=False).abs().item() < 1e-6
    values = [mmd_loss(pts + shift, pts, weight, unbiased=flag).item()
              for flag in (True, False) for shift in (0.0, 0.05, 0.2, 0.6)]
    for per_estimator in (values[:4], values[4:]):
        assert all(a < b for a, b in zip(per_estimator, per_estimator[1:]))


def test_mmd_ignores_nan_targets_of_zero_weight_joints_and_has_gradient():
    pred = (torch.rand(2, 17, 5, 2) * 2 - 1).requires_grad_()
    target = torch.rand(2, 17, 5, 2)
    weight = torch.ones(2, 17)
    target[1, 4] = float("nan")
    weight[1, 4] = 0
    value = mmd_loss(pred, target, weight)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(pred.grad).all()
    assert pred.grad[1, 4].abs().max() == 0 and pred.grad.abs().max() > 0


# ---------------------------------------------------------------- MMD targets

ARTICULATED = set(COCO17_HIGHLY_ARTICULATED)
# (joint, max_conf, GT in the detector's field of view, GT in the augmented crop,
#  expected target is the heatmap samples, expected weight)
TARGET_CASES = [
    (9, 0.40, True, True, True, 1.0),      # articulated, invisible, in view: samples, penalised
    (8, 0.30, False, True, False, 1.0),    # articulated, uncertain, outside the field of view:
                                           # GT, still penalised (old rule: weight 0)
    (10, 0.90, True, True, False, 1.0),    # confident: GT repeated
    (7, 0.70, True, True, False, 1.0),     # max_conf < 0.7 is strict
    (13, 0.15, True, True, False, 1.0),    # min_conf boundary: 0.15 is not > 0.15
    (14, 0.16, True, True, True, 1.0),     # just above min_conf
    (16, 0.05, True, True, False, 1.0),    # below min_conf: GT, articulated so still penalised
    (15, 0.40, True, False, False, 0.0),   # GT outside the augmented crop: weight 0
    (4, 0.60, False, True, False, 1.0),    # outside the field of view, in the crop: GT, weight 1
    (0, 0.30, True, True, False, 0.0),     # not articulated and invisible: weight 0
    (5, 0.50, True, True, False, 1.0),     # not articulated, max_conf 0.5 is visible
    (6, 0.60, False, True, False, 1.0),    # not articulated, uncertain, out of view: GT, weight 1
    (11, 0.95, False, False, False, 0.0),  # not articulated, GT outside the crop
]


def test_mmd_targets_rule():
    m = 6
    gt = torch.rand(1, 17, 2) * 2 - 1
    samples = torch.rand(1, 17, m, 2) * 2 - 1
    conf = torch.full((1, 17), 0.9)
    in_fov = torch.ones(1, 17, dtype=torch.bool)
    in_crop = torch.ones(1, 17, dtype=torch.bool)
    for joint, c, fov, crop, _, _ in TARGET_CASES:
        conf[0, joint], in_fov[0, joint], in_crop[0, joint] = c, fov, crop
    target, weight = mmd_targets(gt, samples, conf, in_fov, in_crop, uncertain_conf=0.7,
                                 min_conf=0.15, invisible_conf=0.5)
    assert target.shape == (1, 17, m, 2) and weight.shape == (1, 17)
    for joint, _, _, _, use_samples, w in TARGET_CASES:
        assert (joint in ARTICULATED) == (joint in (7, 8, 9, 10, 13, 14, 15, 16))
        # slot 0 is always the ground truth (reference release), the rest samples or GT
        torch.testing.assert_close(target[0, joint, 0], gt[0, joint], msg=f"joint {joint}")
        expected = samples[0, joint, 1:] if use_samples else gt[0, joint].expand(m - 1, 2)
        torch.testing.assert_close(target[0, joint, 1:], expected, msg=f"joint {joint}")
        assert weight[0, joint].item() == w, f"joint {joint}"
    sample_joints = mmd_sample_joints(conf, in_fov, in_crop, uncertain_conf=0.7, min_conf=0.15)
    assert sample_joints[0].tolist() == [any(j == case[0] and case[4] for case in TARGET_CASES)
                                         for j in range(17)]
    # joints untouched by the table are confident, in view: GT, weight 1
    rest = sorted(set(range(17)) - {case[0] for case in TARGET_CASES})
    torch.testing.assert_close(target[0, rest], gt[0, rest, None].expand(-1, m, 2))
    assert (weight[0, rest] == 1).all()


def test_mmd_targets_thresholds_are_parameters():
    gt, samples = torch.zeros(1, 17, 2), torch.ones(1, 17, 3, 2)
    conf, inside = torch.full((1, 17), 0.75), torch.ones(1, 17, dtype=torch.bool)
    target, _ = mmd_targets(gt, samples, conf, inside, inside, uncertain_conf=0.8)
    assert (target[0, 9, 1:] == 1).all() and (target[0, 0] == 0).all()
    _, weight = mmd_targets(gt, samples, conf, inside, inside, invisible_conf=0.8)
    assert weight[0, 0] == 0 and weight[0, 9] == 1


def test_mmd_rule_by_hand():
    """Targets, weights and normalisation together, one image. Every joint's prediction is its
    GT (MMD² 0) except: joint 8 (articulated, uncertain, GT outside the field of view but in the
    crop) has pred {(0, 0)} × 2 against its GT (0.3, 0.4): target GT, weight 1, MMD² 6 − 2φ;
    joint 9 (articulated, uncertain, in view) has GT (0, 0), pred {(0, 0)} × 2 and samples
    {(0.3, 0.4)} × 2: target {GT, sample}, so MMD² = 1.5 − φ/2 biased, 0 unbiased. The total is
    the mean over 17 joints. (The old rule: joint 8 weight 0, joint 9's target two samples,
    the sum divided by 16 weights.)"""
    gt = torch.zeros(1, 17, 2, dtype=torch.float64)
    gt[0, 8] = torch.tensor([0.3, 0.4], dtype=torch.float64)
    samples = torch.zeros(1, 17, 2, 2, dtype=torch.float64)
    samples[0, 9] = torch.tensor([0.3, 0.4], dtype=torch.float64)
    conf = torch.full((1, 17), 0.9, dtype=torch.float64)
    conf[0, 8] = conf[0, 9] = 0.4
    in_fov = torch.ones(1, 17, dtype=torch.bool)
    in_fov[0, 8] = False
    in_crop = torch.ones(1, 17, dtype=torch.bool)
    pred = gt[:, :, None].expand(1, 17, 2, 2).clone()
    pred[0, 8] = 0.0
    target, weight = mmd_targets(gt, samples, conf, in_fov, in_crop)
    assert (weight == 1).all()
    phi = phi_d2(0.25)
    biased = mmd_loss(pred, target, weight, unbiased=False).item()
    unbiased = mmd_loss(pred, target, weight, unbiased=True).item()
    assert biased == pytest.approx((6 - 2 * phi + 1.5 - phi / 2) / 17, rel=1e-12)
    assert unbiased == pytest.approx((6 - 2 * phi) / 17, rel=1e-12)
