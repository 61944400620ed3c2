"""train/losses.py: the simple terms (orthogonality, camera, NLL, betas, 2D keypoints, the total)
and the Table S2 sample supervision, against hand computations and loops."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from body.rotations import matrix_to_rot6d
from core.config import load_config
from train.losses import (LOSS_NAMES, betas_loss, camera_loss, keypoints_2d_loss,
                          keypoints_2d_samples_loss, keypoints_3d_mode_loss, nll_loss, orth_loss,
                          rotation_mode_loss, supervised_2d_joints, total_loss)


# ---------------------------------------------------------------- the simple terms

def test_orth_loss():
    R = torch.from_numpy(Rotation.random(2 * 3 * 22, random_state=0).as_matrix())
    rot6d = matrix_to_rot6d(R).reshape(2, 3, 22, 6)
    assert orth_loss(rot6d).item() == pytest.approx(0.0, abs=1e-20)
    assert orth_loss(rot6d * 1.1).item() > 0
    assert orth_loss(rot6d + 0.01 * torch.randn_like(rot6d)).item() > 0


def test_orth_loss_by_hand():
    """Mode rows (2, 0, 0), (0, 1, 0): A·Aᵀ − I = diag(3, 0), entries² (9, 0, 0, 0), mean 2.25.
    One of 3 samples has rows (1, 1, 0), (0, 0, 1): diag(1, 0), mean 0.25; the samples' mean is
    0.25 / 3. Reference: mode mean + samples mean (the old rule, Σ entries averaged over all 4
    slots, gave (9 + 1) / 4)."""
    eye = [1.0, 0, 0, 0, 1, 0]
    x = torch.tensor([[2.0, 0, 0, 0, 1, 0], eye, [1.0, 1, 0, 0, 0, 1], eye])[None, :, None]
    assert orth_loss(x).item() == pytest.approx(2.25 + 0.25 / 3)
    assert orth_loss(x[:, :1]).item() == pytest.approx(2.25)  # the mode alone


def test_camera_loss_by_hand():
    s = torch.tensor([0.0, 0.1, -0.05])
    expected = (1 + math.exp(-2.0) + math.exp(1.0)) / 3
    assert camera_loss(s, 10.0).item() == pytest.approx(expected, rel=1e-6)
    assert camera_loss(s, scale_factor=5.0).item() == pytest.approx(
        (1 + math.exp(-1.0) + math.exp(0.5)) / 3, rel=1e-6)


def test_nll_loss_scaling():
    log_prob = torch.tensor([-132.0, -264.0])
    assert nll_loss(log_prob).item() == pytest.approx(1.5)
    assert nll_loss(log_prob, dim=66).item() == pytest.approx(3.0)
    assert nll_loss(-log_prob).item() == pytest.approx(-1.5)


def test_betas_loss_by_hand():
    pred = torch.zeros(2, 11)
    gt = torch.zeros(2, 11)
    gt[0, :3] = torch.tensor([1.0, 2.0, 2.0])  # 9
    gt[1, 10] = 1.0  # 1
    assert betas_loss(pred, gt).item() == pytest.approx(5.0)


def test_keypoints_2d_loss_by_hand():
    """Σ |pred − gt| over valid joints × coordinates, divided by B = 2 (reference release; the
    old mean over the 4 valid coordinates gave half of this)."""
    pred = torch.zeros(2, 24, 2, requires_grad=True)
    gt = torch.full((2, 24, 2), float("nan"))
    valid = torch.zeros(2, 24, dtype=torch.bool)
    gt[0, 0], valid[0, 0] = torch.tensor([0.5, -0.5]), True
    gt[1, 7], valid[1, 7] = torch.tensor([0.1, 0.3]), True
    value = keypoints_2d_loss(pred, gt, valid)
    assert value.item() == pytest.approx((0.5 + 0.5 + 0.1 + 0.3) / 2)
    value.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[~valid] == 0).all() and (pred.grad[valid].abs() == 0.5).all()
    none_valid = torch.zeros_like(valid)
    assert keypoints_2d_loss(pred, gt, none_valid).item() == 0
    # every coordinate of one image off by 0.1: 24 × 2 × 0.1 = 4.8, 48 × the mean
    full = keypoints_2d_loss(torch.zeros(1, 24, 2), torch.full((1, 24, 2), 0.1),
                             torch.ones(1, 24, dtype=torch.bool))
    assert full.item() == pytest.approx(4.8, rel=1e-6)


def test_total_loss_weighting_and_unknown_names():
    weights = load_config().loss_weights
    assert set(weights) == set(LOSS_NAMES)
    terms = {name: torch.tensor(float(i + 1)) for i, name in enumerate(LOSS_NAMES)}
    expected = sum(float(weights[name]) * (i + 1) for i, name in enumerate(LOSS_NAMES))
    assert total_loss(terms, weights).item() == pytest.approx(expected, rel=1e-6)
    partial = {"mmd": torch.tensor(2.0), "nll": torch.tensor(3.0)}
    assert total_loss(partial, {"mmd": 0.05, "nll": 0.1, "mask": 9.0}).item() == \
        pytest.approx(0.4)
    with pytest.raises(KeyError, match="mmdd"):
        total_loss({"mmdd": torch.tensor(1.0), "nll": torch.tensor(1.0)}, weights)


# ---------------------------------------------------------------- Table S2 sample supervision

def test_keypoints_2d_samples_loss_against_loops():
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 17, 4, 2, generator=g, dtype=torch.float64)
    gt = torch.randn(2, 17, 2, generator=g, dtype=torch.float64)
    conf = torch.rand(2, 17, generator=g, dtype=torch.float64)
    in_view = torch.rand(2, 17, generator=g) > 0.2  # GT in the crop
    gt[~in_view] = float("nan")  # never reaches the value
    for visible_only in (False, True):
        w = supervised_2d_joints(in_view, conf, visible_only, 0.5)
        total = count = 0.0
        for b in range(2):
            for k in range(17):
                if in_view[b, k] and (not visible_only or conf[b, k] >= 0.5):
                    for n in range(4):
                        for c in range(2):
                            total += abs(float(pred[b, k, n, c] - gt[b, k, c]))
                            count += 1
        expected = total / count
        got = keypoints_2d_samples_loss(pred, gt, w)
        assert got.item() == pytest.approx(expected, rel=1e-12)
    assert supervised_2d_joints(in_view, conf, True).sum() < in_view.sum()


@pytest.mark.parametrize("which, cut", [("none", 0), ("mode", 1), ("all", 3)])
def test_a_detached_orientation_blocks_only_those_hypotheses_orientation_gradient(which, cut):
    from train.objective import orientation_detached
    pose = torch.randn(2, 3, 22, 6, requires_grad=True)  # (B, 1 + 2 samples, joints, 6D)
    out = orientation_detached(pose, which)
    assert torch.equal(out, pose)                          # the same values
    out.sum().backward()
    grad = pose.grad
    assert torch.all(grad[:, :cut, 0] == 0)                # the cut global orientations
    assert torch.all(grad[:, cut:, 0] == 1)                # the others still learn from the losses
    assert torch.all(grad[:, :, 1:] == 1)                  # every body joint still learns


def test_orientation_mode_loss_by_hand():
    """‖R − R̂‖²_F = 4 (1 − cos θ) for two rotations θ apart (scipy's angle); turned around
    (θ = 180°) it is 8, the same rotation 0; the mean over images."""
    a = Rotation.random(5, random_state=1)
    b = Rotation.random(5, random_state=2)
    theta = (a.inv() * b).magnitude()
    expected = float(np.mean(4 * (1 - np.cos(theta))))
    got = rotation_mode_loss(matrix_to_rot6d(torch.from_numpy(a.as_matrix())),
                             matrix_to_rot6d(torch.from_numpy(b.as_matrix())))
    assert got.item() == pytest.approx(expected, rel=1e-10)
    eye = matrix_to_rot6d(torch.eye(3, dtype=torch.float64))[None]
    turned = matrix_to_rot6d(torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)))
    assert rotation_mode_loss(eye, turned[None]).item() == pytest.approx(8.0)
    assert rotation_mode_loss(eye, eye).item() == 0.0


def test_body_pose_mode_loss_sums_over_the_joints():
    """(B, J, 6): per image the sum over the J joints of 4 (1 − cos θ_j), then the mean."""
    a = Rotation.random(2 * 21, random_state=3)
    b = Rotation.random(2 * 21, random_state=4)
    theta = (a.inv() * b).magnitude().reshape(2, 21)
    expected = float(np.mean((4 * (1 - np.cos(theta))).sum(1)))
    six = lambda r: matrix_to_rot6d(torch.from_numpy(r.as_matrix())).reshape(2, 21, 6)  # noqa: E731
    assert rotation_mode_loss(six(a), six(b)).item() == pytest.approx(expected, rel=1e-10)


def test_keypoints_3d_mode_loss_by_hand():
    """L1 of root-centred joints summed over joints × coordinates, mean over images: a shift of
    the whole body costs nothing, one joint 3 cm off along x and 4 cm along y costs 0.07."""
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 24, 3, generator=g, dtype=torch.float64)
    assert keypoints_3d_mode_loss(gt + torch.tensor([1.0, -2.0, 5.0]), gt).item() < 1e-12
    off = gt.clone()
    off[0, 5] += torch.tensor([0.03, 0.04, 0.0], dtype=torch.float64)
    assert keypoints_3d_mode_loss(off, gt).item() == pytest.approx(0.07 / 2, rel=1e-9)
    moved_root = gt.clone()
    moved_root[1, 0] += torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64)  # every other joint off
    assert keypoints_3d_mode_loss(moved_root, gt).item() == pytest.approx(23 * 0.1 / 2, rel=1e-9)


def test_the_paper_lets_every_loss_move_the_orientation_and_unknown_values_are_refused():
    paper, synthetic = load_config(["profile=paper"]).losses, load_config().losses
    assert paper.detach_orientation == "none" and not paper.mask_skip_gt_off_mask
    # the synthetic profile's two departures (docs/diagnosis.md §6)
    assert synthetic.detach_orientation == "mode" and synthetic.mask_skip_gt_off_mask
    # and the third (§8): ProHMR's mode-orientation loss, off in the paper
    assert load_config(["profile=paper"]).loss_weights.orientation_mode == 0
    assert load_config().loss_weights.orientation_mode == pytest.approx(1e-3)
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="losses.detach_orientation"):
        load_config(["losses.detach_orientation=root"])


def test_the_face_joints_join_the_mode_2d_loss_only_when_asked_and_only_where_finite():
    from types import SimpleNamespace

    from train.objective import mode_2d_joints
    body = torch.zeros(1, 24, 2, requires_grad=True)
    coco = torch.zeros(1, 17, 2, requires_grad=True)
    gt_coco = torch.zeros(1, 17, 2)
    gt_coco[0, 0] = torch.tensor([0.1, -0.2])  # nose: |Δ| 0.3
    gt_coco[0, 3] = torch.tensor([0.05, 0.0])  # left ear: 0.05
    gt_coco[0, 4] = float("nan")  # an ear without ground truth never counts
    gt_coco[0, 5] = torch.tensor([9.0, 9.0])  # a shoulder: not a face joint
    gt_body = torch.full((1, 24, 2), 0.01)
    mode = SimpleNamespace(body2d=body, coco2d=coco)
    targets = SimpleNamespace(gt_body2d=gt_body, gt_body2d_valid=torch.ones(1, 24, dtype=bool),
                              gt_coco=gt_coco)
    reference = keypoints_2d_loss(*mode_2d_joints(mode, targets, face=False))
    assert reference.item() == pytest.approx(24 * 2 * 0.01)
    with_face = keypoints_2d_loss(*mode_2d_joints(mode, targets, face=True))
    assert with_face.item() == pytest.approx(24 * 2 * 0.01 + 0.3 + 0.05)
    with_face.backward()
    assert torch.isfinite(coco.grad).all() and coco.grad[0, 5:].abs().sum() == 0
    assert coco.grad[0, 4].abs().sum() == 0 and coco.grad[0, 0].abs().sum() > 0
