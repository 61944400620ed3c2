"""The parametric motions (synthetic/motions.py): joint limits, mirroring, coherent sequences, the
train/test split of pipelines.yaml, and the independent generator's unchanged random stream."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from body.fast_joints import FastJoints
from body.joints import SMPLX_TO_COCO17
from body.models import load_smplx
from body.rotations import axis_angle_to_matrix
from core.config import load_config
from core.errors import ConfigError
from synthetic import motions
from synthetic.motions import MOTIONS, Curve, MotionGroup, PoseModel, pose_models
from synthetic.poses import LIMITS_HIGH, LIMITS_LOW, REST, interpolate_poses, sample_body_pose

ALL = (MotionGroup(tuple(MOTIONS), (0.5, 1.25)),)
COCO_MIRROR = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def _style(name: str, mirror: bool = False) -> motions._Style:
    c = len(MOTIONS[name].curves)
    return motions._Style(MOTIONS[name], np.ones(c), np.zeros(c), mirror, 0.03)


def test_at_least_eight_motions_whose_own_curves_respect_the_limits():
    assert len(MOTIONS) >= 8
    phase = np.linspace(0, 1, 101)
    for name in MOTIONS:
        euler = REST + _style(name).offsets(phase)  # unclipped, gain 1
        assert (euler >= LIMITS_LOW - 0.05).all() and (euler <= LIMITS_HIGH + 0.05).all(), name
        assert np.abs(euler - REST).max() > 0.3, name  # every motion moves something


def test_drawn_poses_are_clipped_to_the_limits_and_move_widely():
    rng = np.random.default_rng(0)
    images = motions.image_euler(rng, 300, ALL)
    sequence = motions.sequence_euler(rng, 200, ALL)
    for euler in (images, sequence):
        assert (euler >= LIMITS_LOW).all() and (euler <= LIMITS_HIGH).all()
    assert np.ptp(images[:, 0, 0]) > 1.5  # the left hip flexes far: not the rest pose + noise
    assert (images[:, 3, 0] >= 0).all()  # knees bend one way only


def test_bump_curve_by_hand():
    bump = Curve(1, 0, 2.0, "bump", at=0.0, width=0.2, bias=0.1)
    values = bump(np.array([0.0, 0.1, 0.95, 0.2, 0.5]))  # 0.95 is 0.05 before the centre
    expected = [2.1, 0.1 + 1.0, 0.1 + 2.0 * 0.5 * (1 + np.cos(np.pi * 0.25)), 0.1, 0.1]
    np.testing.assert_allclose(values, expected, atol=1e-12)
    np.testing.assert_allclose(Curve(1, 0, 2.0, at=0.25)(np.array([0.0, 0.5])), [2.0, -2.0],
                               atol=1e-12)


def test_walk_legs_in_anti_phase_and_periodic():
    style, phase = _style("walk"), np.linspace(0, 1, 17)
    left, half = style.offsets(phase), style.offsets(phase + 0.5)
    np.testing.assert_allclose(left[:, 0], half[:, 1], atol=1e-12)  # left hip = right hip later
    np.testing.assert_allclose(style.offsets(phase + 1.0), left, atol=1e-12)


@pytest.fixture(scope="module")
def coco_joints(body_models):
    body = FastJoints(load_smplx(body_models, num_betas=11), list(SMPLX_TO_COCO17))

    def joints(euler: np.ndarray) -> np.ndarray:
        aa = Rotation.from_euler("XYZ", euler.reshape(-1, 3)).as_rotvec().reshape(-1, 21, 3)
        pose = np.concatenate([np.zeros((len(aa), 1, 3)), aa], 1)
        rot = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32))
        return body(torch.zeros(len(aa), 11), rot).numpy()
    return joints


@pytest.mark.parametrize("name", ["kick", "throw", "wave"])
def test_mirroring_reflects_the_body_across_its_sagittal_plane(coco_joints, name):
    """Independent oracle: the mirrored motion's joints are its joints reflected (x → −x) with
    left and right swapped (the synthetic body is symmetric to ~1 cm)."""
    phase = np.array([0.3, 0.4, 0.5, 0.65])
    pose, mirrored = (coco_joints(REST + _style(name, m).offsets(phase)) for m in (False, True))
    reflected = pose[:, COCO_MIRROR] * np.array([-1.0, 1.0, 1.0])
    rest = coco_joints(REST[None])[0]
    asymmetry = np.abs(rest[COCO_MIRROR] * [-1, 1, 1] - rest).max()
    assert np.abs(mirrored - reflected).max() < asymmetry + 0.01
    assert np.abs(mirrored - pose).max() > 0.3  # the moving limb changed sides


def test_the_kick_raises_the_left_foot_forward(coco_joints):
    kick = coco_joints(REST + _style("kick").offsets(np.array([0.5])))[0]
    assert kick[15, 2] - kick[16, 2] > 0.3  # COCO 15 left ankle, z forward


def test_sequences_are_coherent_where_independent_draws_are_not():
    rng = np.random.default_rng(1)
    seq = np.stack([motions.sequence_euler(rng, 64, ALL) for _ in range(8)])
    steps = np.abs(np.diff(seq, axis=1)).max(-1).max(-1)  # (8, 63) largest change per frame
    assert steps.max() < 0.35
    assert np.ptp(seq, axis=1).max(-1).max(-1).min() > 0.2  # and every sequence moves
    jumps = np.abs(np.diff(motions.image_euler(rng, 64, ALL), axis=0)).max(-1).max(-1)
    assert np.median(jumps) > 3 * np.median(steps)


def test_the_configured_test_split_holds_out_motions_and_gains():
    cfg = load_config().synthetic
    assert cfg.poses == "motions"
    models = pose_models(cfg)
    train = models["train"].groups
    train_motions = {m for g in train for m in g.motions}
    train_gain = max(g.gain[1] for g in train)
    for group in models["test"].groups:  # each group is new in its motions or in its gains
        assert not set(group.motions) & train_motions or group.gain[0] >= train_gain
    assert {m for g in models["test"].groups for m in g.motions} - train_motions  # some unseen
    assert len(train_motions) >= 8


def test_bad_config_names_the_key():
    cfg = load_config().synthetic
    with pytest.raises(ConfigError, match=r"synthetic\.poses: 'euler'"):
        pose_models({**cfg, "poses": "euler"})
    bad = {"train": [{"motions": ["walk", "moonwalk"], "gain": [0.5, 1.0]}], "test": []}
    with pytest.raises(ConfigError, match=r"synthetic\.motions\.train\[0\].*moonwalk"):
        pose_models({"poses": "motions", "motions": bad})


def test_independent_keeps_the_old_random_stream():
    model = PoseModel("independent")
    np.testing.assert_array_equal(model.images(np.random.default_rng(3), 4),
                                  sample_body_pose(np.random.default_rng(3), 4))
    old = interpolate_poses(sample_body_pose(np.random.default_rng(4), 2), 20)
    np.testing.assert_array_equal(model.sequence(np.random.default_rng(4), 20), old)
