import json

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from body.models import load_smpl, load_smplx, load_smplx2smpl
from body.rotations import axis_angle_to_matrix
from core.config import load_config
from eval.protocol import Collected
from eval.report import write_report
from eval.run import run_evaluation
from train import trainer
from train.model import NUM_BETAS, ProbabilisticHMR

TINY = ["train.batch_size=4", "train.workers=0", "model.flow_hidden=32", "model.flow_blocks=2",
        "model.regressor_hidden=32", "model.backbone_options.out_features=16",
        "model.pose_mlp=[51,32,16]", "model.samples_train=5", "train.iterations=2",
        "train.checkpoint_every=2", "train.image_every=1000", "eval.hypotheses=10",
        "eval.curve_crops=4", "eval.pve_vs_n=[1,2,5,20]", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def trained(precomputed, body_models, tmp_path_factory):
    stores, _ = precomputed
    root = tmp_path_factory.mktemp("eval")
    cfg = load_config([f"paths.stores={stores}", f"body.models={body_models}",
                       f"paths.runs={root / 'runs'}", f"paths.reports={root / 'reports'}",
                       *TINY])
    trainer.fit(cfg)
    return cfg


def test_report_files_and_sane_metrics(trained):
    out = run_evaluation(trained, "synthetic-test")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["crops"] > 0 and metrics["hypotheses"] == 10
    for name in ("mpjpe", "pa_mpjpe", "pve"):
        assert 0 < metrics["best_of_n"][name] <= metrics["mode"][name]
    assert metrics["best_of_n"]["pa_mpjpe"] <= metrics["best_of_n"]["mpjpe"] + 1e-6
    curve = [metrics["pve_vs_n"][k] for k in ("1", "2", "5", "20")]
    assert all(a >= b for a, b in zip(curve, curve[1:]))  # min-of-N never increases
    assert 0 <= metrics["percin"] <= 100 and metrics["mindist_px"] >= 0
    assert metrics["profile"] == metrics["trained_profile"] == "synthetic"
    assert metrics["body_models"] == str(trained.body.models)
    kp2d = metrics["kp2d_error_px"]
    assert 0 < kp2d["detector"] < kp2d["mode"]  # the tiny model is far worse than its condition
    right = kp2d["right_person"]
    assert 0 < right["crops"] <= metrics["crops"] and right["detector"] <= 25.6
    for part in ("visible", "invisible"):
        assert metrics["energy_score_mm"][part] > 0
        assert 0 <= metrics["calibration"]["q50"][part] <= metrics["calibration"]["q90"][part] <= 1
    report = (out / "report.md").read_text()
    assert "Table 1" in report and "profile `synthetic`" in report
    assert "| paper |" not in report and "do not apply here" in report
    assert "2DKP detector (px)" in report and "energy score (mm)" in report
    for plot in ("pve_vs_n.png", "ambiguous_joint_clouds.png", "hypotheses.png", "meshes.png"):
        assert (out / plot).stat().st_size > 1000
    assert "![meshes](meshes.png)" in report and "Fig. 5" in report


@pytest.mark.parametrize("paper_numbers", [True, False])
def test_the_papers_numbers_only_when_asked(tmp_path, paper_numbers):
    result = {"crops": 3, "hypotheses": 100, "best_of_n": dict.fromkeys(("mpjpe", "pa_mpjpe",
              "pve"), 1.0), "mode": dict.fromkeys(("mpjpe", "pa_mpjpe", "pve"), 2.0),
              "kp2d_error_px": {"mode": 1.0, "samples": 1.0, "detector": 1.0, "right_person": {
                  "mode": 1.0, "samples": 1.0, "detector": 1.0, "crops": 3}},
              "energy_score_mm": {"visible": 1.0, "invisible": 2.0},
              "calibration": {q: {"visible": 0.5, "invisible": 0.5} for q in ("q50", "q90")},
              "spread_3d_mm": {
                  "visible": 1.0, "invisible": 1.0}, "percin": 50.0, "mindist_px": 0.5,
              "percin_points": 4, "ground_truth": {"percin": 90.0, "mindist_px": 0.1},
              "gt_on_mask": {"percin": 70.0, "mindist_px": 0.2},
              "heatmap_w1_px": 1.0, "heatmap_w1_joints": 2}
    report = write_report(tmp_path, result, "emdb", "emdb", "x.ckpt", Collected(),
                          {"profile": "paper"}, paper_numbers).read_text()
    assert ("| paper | 63.6 | 40.9 | 72.0 | 84.3 |" in report) == paper_numbers
    assert ("| paper | 5.02 | 6.34 |  | 40.8 | 87.8 | 91.4 | 0.616 |" in report) == paper_numbers
    assert json.loads((tmp_path / "metrics.json").read_text())["profile"] == "paper"


def test_identical_reports_for_a_fixed_seed(trained):
    first = json.loads((run_evaluation(trained, "synthetic-test") / "metrics.json").read_text())
    second = json.loads((run_evaluation(trained, "synthetic-test") / "metrics.json").read_text())
    assert first == second


def test_unknown_dataset_and_missing_checkpoint_are_named(trained, tmp_path):
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        run_evaluation(trained, "nope")
    with pytest.raises(FileNotFoundError, match="make precompute DATASET=emdb"):
        run_evaluation(trained, "emdb")  # configured, but its store is not made
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        run_evaluation(trained, "synthetic-test", str(tmp_path / "none.pt"))


def test_smplx_to_smpl_conversion_matches_the_smpl_body(body_models):
    """The conversion the protocol applies to predictions: SMPL-X vertices through the
    smplx2smpl map land on the SMPL body of the same pose (synthetic models share the
    procedural body, so the SMPL mesh of an equal pose is the reference)."""
    smplx, smpl = load_smplx(body_models), load_smpl(body_models)
    matrix = load_smplx2smpl(body_models)
    rot = torch.eye(3).expand(2, 21, 3, 3).clone()
    rot[1, 17] = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])  # bend the left elbow
    converted = torch.stack([matrix @ v for v in smplx(body_pose=rot).vertices])
    reference = smpl(body_pose=torch.cat([rot, torch.eye(3).expand(2, 2, 3, 3)], 1)).vertices
    err = (converted - reference).norm(dim=-1)
    assert err.mean() < 0.01 and err.max() < 0.05
    dense = matrix.to_dense()
    torch.testing.assert_close(dense @ smplx(body_pose=rot).vertices[1], converted[1])


def test_model_mode_is_the_first_hypothesis(trained):
    model = ProbabilisticHMR(trained, trained.body.models).eval()
    cond = torch.randn(2, model.flow.module_list[0].subnet1[0].in_features - 66)
    with torch.no_grad():
        modes = model.flow.mode(cond)
        with_mode = model.flow.sample_with_mode(cond, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(with_mode[:, 0], modes)
    assert np.isfinite(with_mode.numpy()).all()


def test_reference_checkpoint_evaluates_like_the_same_weights_of_ours(trained, tmp_path):
    """`make eval-emdb CKPT=humr_best.ckpt`: our trained weights saved under the reference
    release's Lightning names give exactly the report of our own checkpoint."""
    from train.checkpoint import latest_checkpoint, read_checkpoint, run_dir

    from tests.train.test_checkpoints_external import to_reference_names

    ours = latest_checkpoint(run_dir(trained))
    model = ProbabilisticHMR(trained, trained.body.models)
    model.load_state_dict(read_checkpoint(ours)["model"])
    torch.save({"state_dict": to_reference_names(model), "epoch": 1},
               tmp_path / "humr_best.ckpt")
    out = run_evaluation(trained, "synthetic-test", str(tmp_path / "humr_best.ckpt"))
    assert out.relative_to(trained.paths.reports).parts == ("reference", "humr_best",
                                                            "synthetic-test")
    reference = json.loads((out / "metrics.json").read_text())
    own = json.loads((run_evaluation(trained, "synthetic-test") / "metrics.json").read_text())
    for key in ("best_of_n", "mode", "heatmap_w1_px", "spread_3d_mm", "pve_vs_n"):
        assert reference[key] == own[key], key

    state = to_reference_names(model)
    del state["model.head.fc1.weight"]
    torch.save({"state_dict": state}, tmp_path / "partial.ckpt")
    with pytest.raises(ValueError, match="head.net.0.weight"):
        run_evaluation(trained, "synthetic-test", str(tmp_path / "partial.ckpt"))


# -------------------------------------------------------- protocol rules (docs/method.md §6)

def _evaluator(cfg):
    from eval.protocol import Evaluator
    from eval.run import resolve_checkpoint
    from train.model import load_model

    model, trained_cfg, _ = load_model(cfg, resolve_checkpoint(cfg, None))
    return Evaluator(model, trained_cfg, "emdb", torch.device("cpu"))


def test_emdb_ground_truth_joints_are_the_smpl_fk_joints(body_models):
    """The gendered SMPL's own skeleton joints, which differ from its regressor on the posed
    vertices (the old rule) by millimetres for a bent pose."""
    from types import SimpleNamespace

    from eval.protocol import ground_truth_bodies

    models = {g: load_smpl(body_models, g) for g in ("male", "female")}
    pose = np.zeros((2, 24, 3), np.float32)
    pose[:, 18] = [0.0, -1.4, 0.0]  # left elbow
    pose[:, 4] = [1.2, 0.0, 0.0]  # left knee
    pose[1, 0] = [0.3, 0.2, 0.1]
    labels = SimpleNamespace(pose=pose, betas=np.full((2, 10), 0.5, np.float32),
                             transl=np.array([[0, 0, 3], [0.2, 0, 4]], np.float32),
                             gender=np.array(["female", "male"]))
    verts, joints = ground_truth_bodies(models, labels, np.arange(2), torch.device("cpu"))
    for i, gender in enumerate(labels.gender):
        mats = axis_angle_to_matrix(torch.from_numpy(pose[i:i + 1]))
        out = models[gender](betas=torch.from_numpy(labels.betas[i:i + 1]),
                             global_orient=mats[:, :1], body_pose=mats[:, 1:],
                             transl=torch.from_numpy(labels.transl[i:i + 1]))
        torch.testing.assert_close(joints[i], out.joints[0, :24])
        torch.testing.assert_close(verts[i], out.vertices[0])
        regressed = models[gender].J_regressor @ verts[i]
        assert (regressed - joints[i]).norm(dim=-1).max() > 1e-3  # the two rules differ


def test_plausibility_counts_the_mode_and_keeps_the_mask_subset():
    """Every hypothesis counts (slot 0, the mode, too); images without a mask or with fewer than
    2 invisible joints are not in the subset."""
    from eval.protocol import plausibility

    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    points = torch.full((3, 3, 17, 2), 5.0, dtype=torch.float64)  # samples inside
    points[:, 0] = 14.0  # the mode: 7 px right of column 7 and 7 px below row 7 → 7√2
    visible = torch.ones(3, 17, dtype=torch.bool)
    visible[:, :2] = False  # images 0, 1: two invisible joints
    visible[2, 1] = True  # image 2: one invisible joint → not in the subset
    has_mask = torch.tensor([True, False, True])  # image 1 has no mask
    perc, mind, n = plausibility(points, masks, has_mask, visible, min_invisible=2, inside_px=0.71)
    assert n == 2 * 3  # image 0 only: 2 joints × 3 hypotheses
    assert perc == pytest.approx(100 * 4 / 6)  # old rule (samples only): 100 %
    assert mind == pytest.approx(2 * 7 * np.sqrt(2) / 6)
    assert plausibility(points, masks, has_mask, visible, min_invisible=3, inside_px=0.71)[2] == 0


def test_eval_projection_is_the_models_camera(trained):
    """`project_to_crop` of the model's own joints reproduces its crop keypoints: the SMPL-mesh
    COCO-17 of the 2D metrics go through exactly the model's CLIFF camera."""
    from eval.examples import TestExamples
    from eval.protocol import project_to_crop

    evaluator = _evaluator(trained)
    store = f"{trained.paths.stores}/synthetic-test.zarr"
    data = TestExamples(store, trained.model.crop_size, trained.train.context_factor)
    inputs = default_collate([data[i] for i in range(3)]).inputs
    with torch.no_grad():
        out = evaluator.model(inputs).hypotheses(2, torch.Generator().manual_seed(0))
    model_frame = out.joints3d[:, :, :17] - out.transl[:, None, None]
    torch.testing.assert_close(project_to_crop(model_frame, out.transl, inputs), out.coco2d,
                               atol=1e-5, rtol=1e-4)


def test_pve_curve_subset_is_seeded_random_and_reuses_the_main_hypotheses(trained):
    from core.seeding import stable_seed
    from eval.protocol import curve_subset, evaluate

    rows = curve_subset(1000, 32, 7)
    assert len(set(rows)) == 32 and list(rows) == sorted(rows) and rows.max() > 500
    assert np.array_equal(rows, curve_subset(1000, 32, 7))
    assert not np.array_equal(rows, np.arange(32))  # the old rule: the first 32 crops
    assert len(curve_subset(5, 32, 7)) == 5

    evaluator = _evaluator(trained)
    store = f"{trained.paths.stores}/synthetic-test.zarr"
    seed = stable_seed(0, "synthetic-test") % 2 ** 63
    got = evaluate(evaluator, store, 6, seed, batch_size=4, curve_crops=5, curve_max=20)
    main = torch.cat(got.errors["pve"])
    curve = torch.cat(got.pve_curve)
    picked = curve_subset(len(main), 5, seed)
    assert curve.shape == (5, 20)
    torch.testing.assert_close(curve[:, :6], main[picked])  # the main table's hypotheses
    assert (curve[:, 6:] != curve[:, :1]).any()  # then new draws


def test_old_key_names_in_a_checkpoint_load_and_an_unknown_key_is_refused(trained, tmp_path):
    """Runs trained before the keys were renamed (model.volume_preserving, losses.invisible_conf,
    …) still evaluate; a saved key this code has no place for is one CheckpointError line."""
    from eval.run import resolve_checkpoint
    from train.checkpoint import CheckpointError, read_checkpoint
    from train.model import load_model

    state = read_checkpoint(resolve_checkpoint(trained, None))
    old = state["config"]
    old["model"]["volume_preserving"] = old["model"].pop("coupling") == "nice"
    old["losses"]["invisible_conf"] = old["conventions"]["visible_conf"]
    old["body"]["smplx_num_betas"] = 11
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / "step_00000001.pt")
    model, cfg, _ = load_model(trained, tmp_path / "checkpoints" / "step_00000001.pt")
    assert cfg.model.coupling == "realnvp" and "invisible_conf" not in cfg.losses
    old["model"]["flow_blok"] = 3
    torch.save(state, tmp_path / "checkpoints" / "step_00000002.pt")
    with pytest.raises(CheckpointError, match="step_00000002.pt: its saved configuration") as err:
        load_model(trained, tmp_path / "checkpoints" / "step_00000002.pt")
    assert "\n" not in str(err.value)


def test_batched_smpl_conversion_equals_the_per_mesh_product(trained):
    from eval.protocol import Evaluator
    from body.rotations import rot6d_to_matrix
    model = ProbabilisticHMR(trained, trained.body.models)
    evaluator = Evaluator(model, trained, "emdb", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    pose6d, betas = torch.randn(2, 3, 22, 6, generator=g), torch.randn(2, 11, generator=g)
    got = evaluator.smpl_vertices(pose6d, betas)
    mats = rot6d_to_matrix(pose6d.flatten(0, 1))
    # the oracle: smplx's own forward and the full (6890, 10475) map, one mesh at a time
    smplx_model = load_smplx(trained.body.models, num_betas=NUM_BETAS)
    verts = smplx_model(betas=betas.repeat_interleave(3, 0), global_orient=mats[:, :1],
                        body_pose=mats[:, 1:]).vertices
    to_smpl = load_smplx2smpl(trained.body.models)
    loop = torch.stack([torch.sparse.mm(to_smpl, v) for v in verts]).unflatten(0, (2, 3))
    assert got.shape == (2, 3, 6890, 3)
    assert (got - loop).abs().max() < 1e-5  # metres: float32 rounding only


def test_plausibility_of_joints_without_a_point_leaves_them_out_but_keeps_the_subset():
    """The ground truth's PercIn: a joint without ground truth (`known` False) is not scored,
    while the image stays in the subset its invisible joints define."""
    from eval.protocol import plausibility

    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    points = torch.full((1, 1, 17, 2), 5.0, dtype=torch.float64)
    points[0, 0, 1] = 14.0  # joint 1 off the mask by 7√2
    visible = torch.ones(1, 17, dtype=torch.bool)
    visible[:, :3] = False
    known = torch.ones(1, 17, dtype=torch.bool)
    every = plausibility(points, masks, torch.tensor([True]), visible, 3, 0.71)
    assert every[2] == 3 and every[0] == pytest.approx(200 / 3)
    known[0, 1] = False
    perc, mind, n = plausibility(points, masks, torch.tensor([True]), visible, 3, 0.71, known)
    assert (perc, mind, n) == (100.0, 0.0, 2)


def test_on_mask_by_hand():
    from eval.protocol import on_mask

    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 4:8, 4:8] = True  # image 1: empty mask
    points = torch.tensor([[[5.0, 5.0], [7.6, 7.5], [9.0, 5.0], [float("nan"), 5.0]],
                           [[5.0, 5.0]] * 4], dtype=torch.float64)
    near = on_mask(points, masks, 0.71)
    # (7.6, 7.5) is 0.78 from the centre (7, 7): just outside; (9, 5) is 2 px off
    assert near.tolist() == [[True, False, False, False], [False] * 4]
