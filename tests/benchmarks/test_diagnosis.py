"""The issue-15 diagnostics' own math (the camera inversion) and a
smoke run of every diagnosis script on the small world, so that an API change cannot break them
silently."""
import math

import pytest
import torch

from benchmarks.diagnosis import (backbone_heading, dispersion, head_share, heading, lift,
                                  mode2d, overfit, pose_budget, profile_step, projection, spread)
from benchmarks.diagnosis.common import translation_to_camera
from body.cameras import weak_perspective_to_translation
from train.inputs import ModelInput


def test_translation_to_camera_inverts_the_cliff_conversion():
    g = torch.Generator().manual_seed(0)
    b = 8
    none = torch.empty(b, 0)
    inputs = ModelInput(image=none, det_kp=none, bbox_cond=none,
                        center=(torch.rand(b, 2, generator=g) * 200 + 100).double(),
                        scale=(torch.rand(b, generator=g) + 0.5).double(),
                        focal=torch.full((b,), 640.0).double(),
                        img_size=torch.tensor([[640.0, 360.0]]).expand(b, 2).double())
    cam = torch.stack([torch.rand(b, generator=g) + 0.5, torch.rand(b, generator=g) - 0.5,
                       torch.rand(b, generator=g) - 0.5], 1).double()
    transl = weak_perspective_to_translation(cam, inputs.center, inputs.scale,
                                             inputs.img_size[:, 0], inputs.img_size[:, 1],
                                             inputs.focal)
    torch.testing.assert_close(translation_to_camera(transl, inputs), cam)


@pytest.fixture(scope="module")
def small(precomputed, body_models):
    """Config overrides that point the diagnostics at the small world's training store."""
    stores, _ = precomputed
    return [f"paths.stores={stores}", f"body.models={body_models}", "train.workers=0"]


def _finite(values) -> None:
    assert values and all(math.isfinite(v) for v in values), values


def test_projection_runs_and_the_ground_truth_projects_exactly(small):
    result = projection.run(["--examples", "4", "--fit-iterations", "3", *small])
    numbers = {k: v for k, v in result.items() if k != "machine"}
    assert set(numbers) == {
        "mean_shape_fitted_camera_l1_per_coord", "mean_shape_fitted_camera_px256_mean",
        "mean_shape_fitted_camera_px256_median", "examples", "body24_px256_max",
        "body24_px256_mean", "coco17_px256_max", "keypoints_2d_loss", "betas_loss",
        "orth_loss", "camera_loss", "orientation_mode_loss"}
    _finite(list(numbers.values()))
    assert result["examples"] == 4
    # measurement 1: the labels through the model's projection land on the stored 2D joints
    assert result["body24_px256_max"] < 0.05 and result["coco17_px256_max"] < 0.05
    assert result["betas_loss"] == 0
    assert result["orientation_mode_loss"] < 1e-10  # the ground truth's own orientation


def test_overfit_runs_every_substitution(small):
    for flags in ([], ["--oracle-det", "--oracle-shape-camera", "--features", "embedding"],
                  ["--direct"]):
        result = overfit.run(overfit.parse(["--crops", "2", "--steps", "2", "--every", "1",
                                            *flags, *small, "model.samples_train=2"]))
        assert [p["step"] for p in result["curve"]] == [1, 2]
        _finite([v for p in result["curve"] for v in p.values()])


def test_profile_step_runs_and_times_every_part(small):
    result = profile_step.run(["--steps", "1", *small, "train.batch_size=2",
                               "model.samples_train=2"])
    assert set(result["part_cpu_s"]) == set(profile_step.PARTS)
    _finite([*result["part_cpu_s"].values(), result["step_s"], result["steps_per_s"]])
    assert "flow_sample" in result["table"]


def test_lift_runs_on_every_pose_set(body_models, capsys):
    argv = ["--poses", "64", "--steps", "5", f"body.models={body_models}"]
    result = lift.run(argv)
    assert len(lift.SETS) == 3
    for name in lift.SETS:
        assert set(result[name]) == {"mpjpe_mm", "kp2d_px256"}
        _finite(list(result[name].values()))
    assert lift.main(argv) == 0
    assert "parametric motions {'mpjpe_mm'" in capsys.readouterr().out


def test_geodesic_angle_of_a_known_rotation():
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    assert float(spread.geodesic_deg(rz, torch.eye(3))) == pytest.approx(30, abs=1e-3)
    assert float(spread.geodesic_deg(rz, rz)) == pytest.approx(0, abs=0.1)


def _tiny_run(small, runs) -> list[str]:
    """Overrides of a one-step run "tiny" of a tiny model under `runs` (trained here)."""
    tiny = [*small, f"paths.runs={runs}", "train.batch_size=2", "model.flow_hidden=32",
            "model.flow_blocks=2", "model.regressor_hidden=32", "model.samples_train=2",
            "model.backbone_options.out_features=16", "model.pose_mlp=[51,32,16]",
            "train.iterations=1", "train.checkpoint_every=1", "train.image_every=1000"]
    from core.config import load_config
    from train import trainer
    trainer.fit(load_config(["profile=synthetic", "train.run=tiny", *tiny]))
    return tiny


def test_spread_splits_a_trained_model_and_matches_the_metric_at_one_orientation(
        small, tmp_path):
    tiny = _tiny_run(small, tmp_path)
    result = spread.run(spread.parse(["--run", "tiny", "--crops", "4", "--hypotheses", "5",
                                      *tiny]))
    assert result["crops"] == 4
    for key in ("vis", "inv"):
        full, local = result["spread_mm"][key], result["spread_mode_orientation_mm"][key]
        _finite([full, local, *result["spread_axes_xyz_mm"][key]])
        assert 0 < local and 0 < full
    for key in ("to_mode", "error_mode", "error_samples"):
        assert 0 <= result[f"orientation_{key}_deg"]["median"] <= 180
    assert all(0 <= v <= 1 for v in result["wrong_way_share"].values())
    assert math.isfinite(result["turned_gt_log_density_nats"]["median"])


def test_dispersion_spread_and_joint_classes_by_hand():
    points = torch.zeros(1, 2, 17, 2)
    points[0, 1, :, 0] = 2.0  # two points 2 px apart: each 1 px from their mean
    points[0, 1, 3] = torch.tensor([3.0, 4.0])  # joint 3: 5 px apart, 2.5 from the mean
    spread_px = dispersion.spread_px(points)
    assert spread_px.shape == (1, 17)
    assert float(spread_px[0, 0]) == pytest.approx(1.0) and float(spread_px[0, 3]) == 2.5
    conf = torch.full((1, 17), 0.3)
    conf[0, 0], conf[0, 9], conf[0, 10] = 0.9, 0.1, 0.3  # visible; below mmd_min_conf; occluded
    gt = torch.zeros(1, 17, 2)
    gt[0, 7] = torch.tensor([1.5, 0.0])  # outside the crop: not an occluded joint of W1
    classes = dispersion.joint_classes(conf, gt, visible_conf=0.5, min_conf=0.15)
    assert classes["visible"][0].nonzero().flatten().tolist() == [0]
    occluded = classes["occluded"][0].nonzero().flatten().tolist()
    assert 0 not in occluded and 7 not in occluded and 9 not in occluded and 10 in occluded
    articulated = classes["occluded_articulated"][0].nonzero().flatten().tolist()
    assert articulated == [8, 10, 13, 14, 15, 16]  # 7 outside the crop, 9 below min_conf
    assert (classes["occluded_articulated"] | classes["occluded_other"]).eq(
        classes["occluded"]).all()


def test_dispersion_runs_on_a_trained_model(small, tmp_path):
    tiny = _tiny_run(small, tmp_path)
    result = dispersion.run(dispersion.parse(["--run", "tiny", "--crops", "4",
                                              "--hypotheses", "5", *tiny]))
    assert result["crops"] == 4 and set(result["px256"]) == set(dispersion.CLASSES)
    visible = result["px256"]["visible"]
    assert visible["joints"] > 0
    _finite([visible[m] for m in dispersion.MEASURES])
    assert visible["hypotheses"] > 0 and visible["heatmap"] > 0


def test_head_share_reprojects_with_the_labels_head_and_checks_it_on_the_labels_pose(
        small, tmp_path):
    tiny = _tiny_run(small, tmp_path)
    result = head_share.run(head_share.parse(["--run", "tiny", "--crops", "4",
                                              "--hypotheses", "5", *tiny]))
    assert result["labels_pose_px"] < 0.05  # the labels' pose through the `labels` path
    own, labels = result["px256"]["own"], result["px256"]["labels"]
    for c in ("visible", "occluded"):
        assert own[c]["joints"] == labels[c]["joints"]
        assert own[c]["heatmap"] == labels[c]["heatmap"]  # the heatmap does not see the head
    assert own["visible"]["joints"] > 0
    _finite([own["visible"][m] for m in dispersion.MEASURES]
            + [labels["visible"][m] for m in dispersion.MEASURES])
    # an untrained head's shape and camera differ from the labels': the two projections differ
    assert own["visible"]["truth_to_hypotheses"] != labels["visible"]["truth_to_hypotheses"]


def test_heading_errors_count_a_body_turned_about_the_vertical_as_wrong_way():
    from body.rotations import axis_angle_to_rot6d
    pose = torch.zeros(4, 22, 3)
    pose[:, 0] = torch.tensor([[math.pi, 0, 0], [0.3, 0.2, 0.1], [0, 0.5, 0], [1, 0, 0]])
    turned = pose.clone()
    turned[2:, 0] = torch.tensor([[0, 0.5 + math.pi, 0], [1, 0, 0]])  # 180° about y; same
    turned[3, 0] = torch.tensor([1 + 2.5, 0, 0])                       # 2.5 rad about x

    class Mode:  # a flow whose mode is `turned`, whatever the condition
        def mode(self, c):
            return axis_angle_to_rot6d(turned).flatten(1)

    result = heading.heading_errors(Mode(), lambda kp: kp, torch.zeros(4, 17, 3), pose)
    assert result["rows"] == 4 and result["wrong_way_pct"] == 50.0  # 180° and 143° > 120°
    # errors 0, 0, 143.2, 180: torch's median is the lower middle value; p90 interpolates
    assert result["median"] == 0 and result["p90"] == pytest.approx(143.2 + 0.7 * 36.8, abs=0.2)


def test_heading_runs_the_nll_only_flow_on_the_small_world(small):
    from core.config import load_config
    cfg = load_config(["profile=synthetic", *small, "model.flow_hidden=32",
                       "model.flow_blocks=2", "model.pose_mlp=[51,32,16]"])
    result = heading.run(cfg, "synthetic-test", steps=2, batch=4, seed=0)
    for split in ("train", "test"):
        assert result[split]["rows"] > 0
        assert 0 <= result[split]["median"] <= result[split]["p90"] <= 180
    assert math.isfinite(result["final_nll"])
    assert 0 < result["test_samples_to_mode"]["median"] <= result["test_samples_to_mode"]["p90"]


def test_backbone_heading_trains_the_stand_in_and_measures_its_heading(small):
    result = backbone_heading.run(backbone_heading.parse(
        ["--every", "1", "backbone_pretraining.steps=2", "backbone_pretraining.batch_size=4",
         *small]))
    assert [point["step"] for point in result["curve"]] == [1, 2]
    for point in result["curve"]:
        _finite([point["loss"]])
        for split in ("train", "test"):
            h = point[split]
            assert 0 <= h["median"] <= h["p90"] <= 180 and 0 <= h["wrong_way_pct"] <= 100


def test_similarity_fit_recovers_a_scaled_shifted_copy_from_the_selected_joints():
    target = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [9.0, 9.0]]])
    points = (target - torch.tensor([1.0, 3.0])) / 2  # scale 2 and shift (1, 3) undo it
    points[0, 3] = torch.tensor([-50.0, 70.0])  # an unselected joint does not enter the fit
    sel = torch.tensor([[True, True, True, False]])
    fitted = mode2d.similarity_fit(points, target, sel)
    torch.testing.assert_close(fitted[0, :3], target[0, :3])
    torch.testing.assert_close(fitted[0, 3], torch.tensor([-99.0, 143.0]))  # 2·p + (1, 3)


def test_mode2d_scores_the_ground_truth_body_near_zero_and_the_camera_fit_no_worse(
        small, tmp_path):
    tiny = _tiny_run(small, tmp_path)
    result = mode2d.run(mode2d.parse(["--run", "tiny", "--crops", "8", *tiny]))
    px = result["kp2d_right_px"]
    _finite(list(px.values()))
    assert result["joints"] > 0
    assert px["gt_body"] < 0.5  # the metric's own floor: the labels through its path
    assert px["mode_similarity"] <= px["mode"] + 1e-6


def test_pose_budget_scores_the_labels_pose_near_zero_and_a_run_and_the_lift_finitely(
        small, tmp_path):
    tiny = _tiny_run(small, tmp_path)
    result = pose_budget.run(pose_budget.parse(["--run", "tiny", "--crops", "4", "--steps", "3",
                                                "--every", "2", "--batch", "2", *tiny]))
    assert result["labels_pose"] < 0.05  # the labels' pose, shape and camera reproduce their 2D
    assert result["runs"]["tiny"] > result["labels_pose"]
    assert sorted(result["lift"]) == [2, 3]
    _finite([result["runs"]["tiny"], *result["lift"].values()])
