import json

import numpy as np
import pytest
import torch

from body.models import load_smpl, load_smplx, load_smplx2smpl
from core.config import load_config
from eval.run import run_evaluation
from train import trainer
from train.model import ProbabilisticHMR

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
    report = (out / "report.md").read_text()
    assert "Table 1" in report and "SYNTHETIC" in report
    for plot in ("pve_vs_n.png", "ambiguous_joint_clouds.png", "hypotheses.png"):
        assert (out / plot).stat().st_size > 1000


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
    sparse = matrix.to_sparse()
    torch.testing.assert_close(torch.sparse.mm(sparse, smplx(body_pose=rot).vertices[1]),
                               converted[1])


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
    from train.checkpoint import latest_checkpoint

    from .test_checkpoints_external import to_reference_names

    ours = latest_checkpoint(trainer.run_dir(trained))
    model = ProbabilisticHMR(trained, trained.body.models)
    model.load_state_dict(torch.load(ours, weights_only=False)["model"])
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
