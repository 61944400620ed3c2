"""Seed statistics and direction verdicts of the ablation report, on hand-computed inputs."""
import math

import pytest

from eval.ablation_stats import (Direction, Summary, check_directions, coverage_gap_2d,
                                 over_seeds, spread_ratio, standard_error, summarize, value,
                                 verdict)


def test_mean_and_sample_sd_by_hand():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)  # sd: sqrt(((1-2)² + 0 + (3-2)²) / (3 - 1))
    one = summarize([5.0, None, math.nan])
    assert (one.mean, one.n) == (5.0, 1) and math.isnan(one.sd)
    assert summarize([None]).n == 0
    assert s.text() == "2.0 ± 1.0" and one.text(2) == "5.00" and summarize([]).text() == "—"


def test_standard_error_by_hand():
    a, b = summarize([1.0, 2.0, 3.0]), summarize([10.0, 14.0])  # sd 1 (n 3), sd 2√2 (n 2)
    assert standard_error(a, b) == pytest.approx(math.sqrt(1 / 3 + 8 / 2))


LOW, MID, HIGH = summarize([1.0, 2.0, 3.0]), summarize([2.0, 3.0, 4.0]), summarize([4.0, 5.0, 6.0])
# LOW vs HIGH: difference −3, SE sqrt(1/3 + 1/3) = 0.816, 2 SE = 1.63; LOW vs MID: −1 < 2 SE


def test_verdict_lower_is_better():
    assert verdict(LOW, HIGH, "lower") == "holds"
    assert verdict(HIGH, LOW, "lower") == "reversed"
    assert verdict(LOW, MID, "lower") == "not significant"
    assert verdict(MID, LOW, "lower") == "not significant"  # the wrong way, but within 2 SE


def test_verdict_higher_is_better():
    percin_mask, percin_mmd = summarize([90.0, 92.0, 94.0]), summarize([80.0, 82.0, 84.0])
    # difference 10, SE sqrt(4/3 + 4/3) = 1.63
    assert verdict(percin_mask, percin_mmd, "higher") == "holds"
    assert verdict(percin_mmd, percin_mask, "higher") == "reversed"
    assert verdict(summarize([83.0, 85.0, 87.0]), percin_mmd, "higher") == "not significant"


def test_verdict_unchanged_missing_and_single_seed():
    assert verdict(LOW, MID, "equal") == "holds"  # |−1| ≤ 1.63
    assert verdict(LOW, HIGH, "equal") == "differs"  # |−3| > 1.63
    assert verdict(LOW, summarize([None]), "lower") == "—"
    assert verdict(summarize([1.0]), summarize([3.0]), "lower") == "one seed"
    # no spread at all: any difference is significant, none is not
    same = Summary(2.0, 0.0, 3)
    assert verdict(Summary(1.0, 0.0, 3), same, "lower") == "holds"
    assert verdict(same, same, "lower") == "not significant"


def _m(pve: float, visible: float = 50.0, invisible: float = 100.0, **extra) -> dict:
    return {"best_of_n": {"pve": pve}, "spread_3d_mm": {"visible": visible,
                                                        "invisible": invisible}, **extra}


def test_value_reads_dotted_keys_and_falls_back_on_missing_ones():
    m = _m(70.0, energy_score_mm={"visible": 12.5})
    assert value(m, "best_of_n.pve") == 70.0 and value(m, "energy_score_mm.visible") == 12.5
    assert value(m, "energy_score_mm.invisible") is None and value(m, "calibration.q50") is None
    assert value(m, spread_ratio) == 2.0 and value({}, spread_ratio) is None
    s = over_seeds({0: m, 1: {}, 2: _m(74.0)}, "best_of_n.pve")  # seed 1 lacks the key
    assert (s.mean, s.n) == (72.0, 2)


def test_direction_check_reports_means_difference_se_and_verdict():
    results = {"bbox": {0: _m(80.0), 1: _m(82.0), 2: _m(84.0)},
               "prohmr": {0: _m(90.0), 1: _m(92.0), 2: _m(94.0)}}
    d = Direction("the bbox condition helps", "PVE", "bbox", "prohmr", "best_of_n.pve", "lower")
    c = d.check(results)
    assert (c["mean_a"], c["mean_b"], c["difference"]) == (82.0, 92.0, -10.0)
    assert c["se"] == pytest.approx(math.sqrt(4 / 3 + 4 / 3)) and c["verdict"] == "holds"
    # a single variant against a constant: ratios 2, 1.5, 2.5 (mean 2, sd 0.5) vs 1
    sharp = Direction("visible sharper", "ratio", "mmd", None, spread_ratio, "higher", 1.0)
    mmd = {0: _m(1, 50, 100), 1: _m(1, 50, 75), 2: _m(1, 50, 125)}
    c = sharp.check({"mmd": mmd})
    assert c["mean_a"] == pytest.approx(2.0) and c["se"] == pytest.approx(0.5 / math.sqrt(3))
    assert c["b"] == "1" and c["verdict"] == "holds"


def test_directions_are_checked_only_where_both_variants_ran():
    results = {"mask": {0: _m(70.0, percin=90.0)}, "mmd": {0: _m(71.0, percin=80.0)}}
    checks = check_directions(results)
    assert checks and all({c["a"], c["b"]} <= {"mask", "mmd", "1"} for c in checks)
    claims = {c["claim"] for c in checks}
    assert "the mask loss raises PercIn" in claims and "the bbox condition helps" not in claims
    es = [c for c in checks if c["metric"].startswith("energy score")]
    assert not es  # mmd's rivals for the energy score were not run


def test_coverage_gap_2d_judges_both_sides_of_calibration_and_skips_old_results():
    def m(q50: float) -> dict:
        return {"coverage_2d_occluded": {"right_person": {"hypotheses": {"q50": q50}}}}
    assert coverage_gap_2d(m(0.25)) == pytest.approx(0.25)
    assert coverage_gap_2d(m(0.75)) == pytest.approx(0.25)  # over-dispersed counts as much
    assert value({}, coverage_gap_2d) is None  # an evaluation before the field
    # MMD near 0.5 against an overconfident NLL-only run: the claim holds
    results = {"mmd": {0: m(0.50), 1: m(0.55), 2: m(0.48)},
               "unsupervised": {0: m(0.25), 1: m(0.28), 2: m(0.22)}}
    [row] = [r for r in check_directions(results)
             if r["metric"].startswith("|2D coverage") and r["b"] == "unsupervised"]
    assert row["verdict"] == "holds"
