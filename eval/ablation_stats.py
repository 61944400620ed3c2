"""Statistics over the ablation's seeds: each metric as mean ± sd over the seeds of a variant,
and each direction the paper claims checked by the difference of two means against its
standard error (docs/ablation.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Union

import numpy as np

Metric = Union[str, Callable[[dict], float]]  # a dotted key of metrics.json, or a function of it
Better = Literal["lower", "higher", "equal"]
MARGIN = 2.0  # a direction holds when the difference is at least this many standard errors


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (nan below two values) and count of a metric over seeds."""

    mean: float
    sd: float
    n: int

    def text(self, digits: int = 1) -> str:
        """`mean ± sd`, `mean` for a single seed, `—` for none."""
        if self.n == 0:
            return "—"
        if self.n == 1 or math.isnan(self.sd):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


def value(metrics: dict, metric: Metric) -> float | None:
    """One metric of one metrics.json; None where a key is missing (an older evaluation)."""
    if callable(metric):
        try:
            return float(metric(metrics))
        except (KeyError, TypeError, ZeroDivisionError):
            return None
    node = metrics
    for key in metric.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return None if node is None else float(node)


def summarize(values: list[float | None]) -> Summary:
    """Summary of the values present (None and nan are left out)."""
    xs = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(xs) == 0:
        return Summary(math.nan, math.nan, 0)
    return Summary(float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else math.nan, len(xs))


def over_seeds(runs: dict, metric: Metric) -> Summary:
    """Summary of a metric over a variant's seeds ({seed: metrics.json})."""
    return summarize([value(m, metric) for m in runs.values()])


def standard_error(a: Summary, b: Summary) -> float:
    """sqrt(sd_a² / n_a + sd_b² / n_b) (nan when a side has one value and so no sd)."""
    return math.sqrt(a.sd ** 2 / a.n + b.sd ** 2 / b.n)


def verdict(a: Summary, b: Summary, better: Better) -> str:
    """Whether "a is `better` than b" holds by ≥ 2 standard errors of the difference:
    "holds", "not significant" or "reversed" ("holds" or "differs" for "equal": unchanged within
    2 SE); "—" where a metric is missing, "one seed" where no standard error can be had."""
    if a.n == 0 or b.n == 0:
        return "—"
    se = standard_error(a, b)
    if math.isnan(se):
        return "one seed"
    diff = a.mean - b.mean
    if better == "equal":
        return "holds" if abs(diff) <= MARGIN * se else "differs"
    gain = -diff if better == "lower" else diff
    if gain > 0 and gain >= MARGIN * se:
        return "holds"
    if gain < 0 and -gain >= MARGIN * se:
        return "reversed"
    return "not significant"


@dataclass(frozen=True)
class Direction:
    """A claim of the paper: variant `a` is `better` than variant `b` on `metric`; `b` None
    compares with the constant `reference` instead (e.g. a ratio against 1)."""

    claim: str
    label: str
    a: str
    b: str | None
    metric: Metric
    better: Better
    reference: float = math.nan

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def check(self, results: dict) -> dict:
        """The claim, both means, the difference, its standard error and the verdict."""
        sa = over_seeds(results[self.a], self.metric)
        sb = (Summary(self.reference, 0.0, 1) if self.b is None
              else over_seeds(results[self.b], self.metric))
        missing = sa.n == 0 or sb.n == 0
        se = math.nan if missing else standard_error(sa, sb)
        return {"claim": self.claim, "metric": self.label, "a": self.a,
                "b": self.b or f"{self.reference:g}", "mean_a": sa.mean, "mean_b": sb.mean,
                "n_a": sa.n, "n_b": sb.n, "difference": sa.mean - sb.mean, "se": se,
                "verdict": verdict(sa, sb, self.better)}


def spread_ratio(m: dict) -> float:
    """Invisible / visible 3D spread: above 1 when the visible joints are the sharper."""
    return m["spread_3d_mm"]["invisible"] / m["spread_3d_mm"]["visible"]


def coverage_gap_2d(m: dict) -> float:
    """|2D coverage at q50 − 0.5| of the occluded joints of the right-person crops: 0 when the
    hypotheses are calibrated there (docs/method.md §6 "Heatmap distribution")."""
    return abs(m["coverage_2d_occluded"]["right_person"]["hypotheses"]["q50"] - 0.5)


MMD_MEASURES = (("best-of-N PVE (mm)", "best_of_n.pve", "lower"),
                ("mode PVE (mm)", "mode.pve", "lower"),
                ("W1 to heatmaps, occluded (px)", "heatmap_w1_px", "lower"),
                ("energy score, invisible (mm)", "energy_score_mm.invisible", "lower"),
                ("|2D coverage q50 − 0.5|, occluded, right person", coverage_gap_2d, "lower"))
MMD_RIVALS = (("unsupervised", "NLL only"), ("realnvp", "2D-all"), ("l2d_vis", "2D-vis"))

DIRECTIONS: tuple[Direction, ...] = (
    *(Direction(f"MMD beats {what}", label, "mmd", rival, key, better)
      for rival, what in MMD_RIVALS for label, key, better in MMD_MEASURES),
    Direction("MMD: visible joints sharper than invisible ones", "spread invis / vis", "mmd",
              None, spread_ratio, "higher", reference=1.0),
    Direction("the mask loss raises PercIn", "PercIn (%)", "mask", "mmd", "percin", "higher"),
    Direction("the mask loss lowers MinDist", "MinDist (px)", "mask", "mmd", "mindist_px",
              "lower"),
    Direction("the mask loss leaves accuracy unchanged", "best-of-N PVE (mm)", "mask", "mmd",
              "best_of_n.pve", "equal"),
    Direction("the mask loss leaves accuracy unchanged", "mode PVE (mm)", "mask", "mmd",
              "mode.pve", "equal"),
    Direction("RealNVP beats NICE", "best-of-N PVE (mm)", "realnvp", "pose_condition",
              "best_of_n.pve", "lower"),
    Direction("the 2D pose condition helps", "best-of-N PVE (mm)", "pose_condition", "bbox",
              "best_of_n.pve", "lower"),
    Direction("the bbox condition helps", "best-of-N PVE (mm)", "bbox", "prohmr",
              "best_of_n.pve", "lower"),
)


def check_directions(results: dict, directions: tuple[Direction, ...] = DIRECTIONS) -> list:
    """Every direction whose variants were run ({variant: {seed: metrics.json}})."""
    return [d.check(results) for d in directions if all(results.get(n) for n in d.needs)]
