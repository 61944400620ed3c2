"""`make ablation` machinery on a tiny setting (not the science: see docs/ablation.md)."""
import json

import pytest
import torch

from core.config import load_config
from eval.ablation import plan, run_ablation
from train.inputs import ModelInput
from train.model import ProbabilisticHMR

from .test_eval import TINY


@pytest.fixture(scope="module")
def overrides(precomputed, body_models, tmp_path_factory):
    stores, _ = precomputed
    root = tmp_path_factory.mktemp("ablation")
    return [f"paths.stores={stores}", f"body.models={body_models}",
            f"paths.runs={root / 'runs'}", f"paths.reports={root / 'reports'}", *TINY,
            "train.iterations=2", "eval.hypotheses=6", "eval.pve_vs_n=[1,2,6]",
            "eval.curve_crops=2"]


def test_tiny_ablation_trains_evaluates_and_reports(overrides, capsys):
    report = run_ablation(overrides, quick=True, only=["mmd", "mask"], jobs=2)
    assert "2 variants × 1 seed(s) [0] = 2 runs, 0 already done" in capsys.readouterr().out
    results = json.loads((report.parent / "results.json").read_text())
    assert results["results"].keys() == {"mmd", "mask"}
    for runs in results["results"].values():
        assert runs.keys() == {"0"}  # --quick: one seed
        assert runs["0"]["hypotheses"] == 6 and runs["0"]["best_of_n"]["pve"] > 0
    claims = {c["claim"] for c in results["directions"]}
    assert "the mask loss raises PercIn" in claims  # mask vs mmd were both run
    assert not any("bbox" in c for c in claims)  # bbox was not run: no claim about it
    assert {c["verdict"] for c in results["directions"]} <= {"one seed", "—"}
    text = report.read_text()
    assert "## Table 3" in text and "## Table S2" in text and "not run" in text
    assert (report.parent / "min_of_n.png").stat().st_size > 1000
    # <reports>/<run>/<checkpoint stem>/<dataset>/
    assert len(list((report.parent.parent / "ablation-quick-mmd-s0").glob(
        "step_*/synthetic-test/metrics.json"))) == 1

    # asked for seeds 0 and 1: seed 0 is found trained and evaluated and not run again
    [metrics] = (report.parent.parent / "ablation-quick-mask-s0").glob(
        "step_*/synthetic-test/metrics.json")
    before = metrics.stat().st_mtime_ns
    report = run_ablation(overrides, quick=True, only=["mask"], jobs=1, seeds=[0, 1])
    out = capsys.readouterr().out
    assert "= 2 runs, 1 already done" in out and "mask-s0: done (already)" in out
    assert "mask-s1: done" in out and "ETA" in out
    assert metrics.stat().st_mtime_ns == before
    log = (report.parent / "logs" / "mask-s0.log").read_text()
    assert log.count("-m train fit") == 1 and log.count("-m eval run") == 1
    assert "train.seed=1" in (report.parent / "logs" / "mask-s1.log").read_text()
    timing = json.loads((report.parent / "timing.json").read_text())
    assert timing["mask-s1"]["train"] > 0 and timing["mask-s1"]["eval"] > 0
    results = json.loads((report.parent / "results.json").read_text())["results"]
    assert results["mask"].keys() == {"0", "1"} and results["mmd"].keys() == {"0"}
    assert "| + L_MMD (n = 1) |" in report.read_text()


def test_plan_runs_every_variant_once_per_seed(overrides):
    cfg = load_config(overrides)
    name, runs = plan(cfg, overrides)
    assert name == "ablation" and len(runs) == 8 * 3  # ablation.seeds: [0, 1, 2]
    assert [r.seed for r in runs[:8]] == [0] * 8  # seed by seed
    for r in runs:
        assert r.cfg.train.run == f"ablation-{r.name}-s{r.seed}"
        assert f"train.seed={r.seed}" in r.overrides and f"eval.seed={r.seed}" in r.overrides
        assert r.cfg.train.seed == r.seed and r.cfg.eval.seed == r.seed
        assert r.cfg.synthetic.seed == cfg.synthetic.seed  # the same world for every seed
    assert len({r.cfg.train.run for r in runs}) == 24
    _, quick = plan(cfg, overrides, quick=True)
    assert {r.seed for r in quick} == {0} and len(quick) == 8
    _, some = plan(cfg, overrides, only=["mask"], seeds=[0, 1])
    assert [(r.name, r.seed) for r in some] == [("mask", 0), ("mask", 1)]


def test_variants_differ_as_the_tables_say(overrides):
    cfg = load_config(overrides)
    _, variants = plan(cfg, overrides, seeds=[0])
    by_name = {v.name: v.cfg for v in variants}
    assert len(by_name) == 8  # Table 3's six rows and S2's two extra models
    prohmr, realnvp, full = by_name["prohmr"], by_name["realnvp"], by_name["mask"]
    assert prohmr.model.coupling == "nice" and realnvp.model.coupling == "realnvp"
    assert not prohmr.model.use_pose_condition and not prohmr.model.use_bbox_condition
    assert realnvp.loss_weights.keypoints_2d_samples == 1e-3 and realnvp.loss_weights.mmd == 0
    assert by_name["l2d_vis"].losses.samples_2d_visible_only
    assert full.loss_weights.mask > 0 and full.loss_weights.mmd > 0
    assert by_name["mmd"].loss_weights.mask == 0
    assert {c.train.iterations for c in by_name.values()} == {2}  # the user's override wins


def test_unknown_variant_and_missing_store_fail_before_work(overrides, tmp_path):
    with pytest.raises(KeyError, match="nope"):
        run_ablation(overrides, quick=True, only=["nope"])
    with pytest.raises(FileNotFoundError, match="make precompute DATASET=synthetic"):
        run_ablation([*overrides, f"paths.stores={tmp_path}"], quick=True, only=["mask"])


def test_switched_off_conditions_leave_no_parameters(overrides):
    cfg = load_config([*overrides, "model.use_pose_condition=false",
                       "model.use_bbox_condition=false"])
    model = ProbabilisticHMR(cfg, cfg.body.models)
    assert model.pose_condition is None
    assert not any(name.startswith("pose_condition") for name, _ in model.named_parameters())
    inputs = ModelInput(image=torch.zeros(2, 3, 224, 224), det_kp=torch.zeros(2, 17, 3),
                        bbox_cond=torch.ones(2, 3), center=torch.zeros(2, 2),
                        scale=torch.ones(2), focal=torch.ones(2), img_size=torch.ones(2, 2))
    cond = model(inputs).condition
    assert cond.shape == (2, model.backbone.out_features)  # image features only (ProHMR)


def test_trained_backbone_has_the_frozen_layout_and_gets_gradients(overrides):
    frozen = ProbabilisticHMR(load_config(overrides), load_config(overrides).body.models)
    cfg = load_config([*overrides, "model.freeze_backbone=false"])
    trained = ProbabilisticHMR(cfg, cfg.body.models).train()
    assert frozen.state_dict().keys() == trained.state_dict().keys()
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    image = torch.randn(2, 3, 64, 64)
    trained.backbone(image).square().sum().backward()
    grads = [p.grad for p in trained.backbone.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
