"""The ablation report renders seeds as mean ± sd and shows missing metrics as —."""
import json

from core.config import load_config
from eval.ablation_report import write_ablation_report


def _metrics(pve: float, percin: float, energy: bool) -> dict:
    m = {"crops": 4, "hypotheses": 6, "best_of_n": {"mpjpe": pve, "pa_mpjpe": pve, "pve": pve},
         "mode": {"mpjpe": pve, "pa_mpjpe": pve, "pve": pve + 10},
         "kp2d_error_px": {"mode": 5.0, "samples": 6.0}, "heatmap_w1_px": 9.0,
         "spread_3d_mm": {"visible": 40.0, "invisible": 80.0}, "percin": percin,
         "mindist_px": 1.25, "pve_vs_n": {"1": pve + 5, "6": pve}}
    if energy:  # written by newer evaluations only
        m["energy_score_mm"] = {"visible": 20.0, "invisible": 30.0}
        # shares in [0, 1], as eval/report.py writes them; the report shows per cent
        m["calibration"] = {"q50": {"invisible": 0.48}, "q90": {"invisible": 0.88}}
        m["coverage_2d_occluded"] = {"right_person": {"hypotheses": {"q50": 0.45, "q90": 0.8}}}
    return m


def test_report_with_seeds_and_a_missing_key(tmp_path):
    cfg = load_config([])
    results = {"mask": {0: _metrics(70.0, 90.0, False), 1: _metrics(72.0, 92.0, False),
                        2: _metrics(74.0, 94.0, False)},
               "mmd": {0: _metrics(71.0, 80.0, True), 1: _metrics(73.0, 82.0, False)}}
    timing = {"mask-s0": {"train": 10.0, "eval": 2.0}, "mask-s1": {"train": 12.0, "eval": 4.0},
              "mask": {"train": 99.0}}  # an entry of a run without seeds is not counted
    report = write_ablation_report(tmp_path, cfg.ablation, results, timing, quick=False)
    text = report.read_text()
    sections = {part.split("\n", 1)[0]: part for part in text.split("\n## ")}
    table3 = next(v for k, v in sections.items() if k.startswith("Table 3"))
    dist = next(v for k, v in sections.items() if k.startswith("The distribution"))
    [mask_row] = [r for r in table3.splitlines() if r.startswith("| + L_mask")]
    assert mask_row.split(" | ")[3] == "72.0 ± 2.0"  # best-of-N PVE over seeds 70, 72, 74
    assert "| + L_MMD (n = 2) |" in table3 and "(n = 2, 3 seeds)" in table3.split("\n")[0]
    [dist_mask] = [r for r in dist.splitlines() if r.startswith("| + L_mask")]
    assert "| 92.0 ± 2.0 |" in dist_mask and dist_mask.endswith("— | — | — | — | — | — |")
    [dist_mmd] = [r for r in dist.splitlines() if r.startswith("| + L_MMD")]
    assert "| 81.0 ± 1.4 |" in dist_mmd  # PercIn 80, 82
    # ES, 3D and 2D calibration: one seed has them, so no sd
    assert dist_mmd.endswith("| 20.0 | 30.0 | 48.0 | 88.0 | 45.0 | 80.0 |")
    checks = json.loads((tmp_path / "results.json").read_text())["directions"]
    by = {(c["claim"], c["metric"]): c for c in checks}
    percin = by[("the mask loss raises PercIn", "PercIn (%)")]
    # 92 ± 2 (n 3) vs 81 ± √2 (n 2): SE sqrt(4/3 + 1) = 1.53, difference 11
    assert percin["difference"] == 11.0 and percin["verdict"] == "holds"
    assert "| the mask loss raises PercIn | PercIn (%) | mask | mmd | 92.00 | 81.00 | 11.00 | " \
           "1.53 | holds |" in text
    assert "| mask | 11 ± 1 | 3 ± 1 | 2 |" in text and "Sum over all timed runs: 28 s" in text
    assert (tmp_path / "min_of_n.png").stat().st_size > 1000
