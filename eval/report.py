"""Reports of an evaluation: `metrics.json`, `report.md` laid out like the paper's Tables 1
and 2 (the paper's numbers beside ours for the real datasets under the paper profile), and the
plots: PVE against the number of hypotheses (Fig. S1), crops with the cloud of hypotheses of the
most ambiguous joint and the ground-truth star (Fig. 1), hypotheses overlaid on the crops, and the
meshes of a few crops (Fig. 5, eval/figures.py)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from train.inputs import crop_rgb  # noqa: E402

from . import metrics  # noqa: E402
from .examples import EVAL_CROP  # noqa: E402
from .figures import draw_cloud, plot_meshes  # noqa: E402
from .protocol import CALIBRATION_Q, Collected  # noqa: E402

# docs/method.md §6: the paper's numbers (Tables 1 and 2, with the mask loss), mm / % / px;
# kp2d = (mode, samples) px, spread = (visible, invisible) mm
PAPER = {
    "3dpw": {"best_of_100": {"mpjpe": 46.2, "pa_mpjpe": 29.8, "pve": 54.4},
             "mode": {"mpjpe": 62.2, "pa_mpjpe": 40.9, "pve": 73.9},
             "kp2d": (4.77, 5.94), "spread": (34.8, 75.1)},
    "emdb": {"best_of_100": {"mpjpe": 63.6, "pa_mpjpe": 40.9, "pve": 72.0},
             "mode": {"mpjpe": 84.3, "pa_mpjpe": 56.1, "pve": 97.7},
             "kp2d": (5.02, 6.34), "spread": (40.8, 87.8), "percin": 91.4, "mindist": 0.616},
}


def _weighted(pairs: list[tuple[float, int]]) -> float:
    """The count-weighted mean of (value, count) pairs; a batch with no count (its value NaN)
    adds nothing."""
    pairs = [(v, n) for v, n in pairs if n]
    total = sum(n for _, n in pairs)
    return float(sum(v * n for v, n in pairs) / total) if total else float("nan")


def _plausibility(parts: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    """(PercIn, MinDist, points) pooled over batches of (PercIn, MinDist, points)."""
    return (_weighted([(p, n) for p, _, n in parts]), _weighted([(d, n) for _, d, n in parts]),
            int(sum(n for *_, n in parts)))


def summarize(got: Collected, hypotheses: int, curve_ns: list[int]) -> dict:
    """The metrics of docs/method.md §6 from the per-crop results."""
    out: dict = {"crops": int(torch.cat(got.errors["mpjpe"]).shape[0]),
                 "hypotheses": hypotheses, "best_of_n": {}, "mode": {}}
    for name, parts in got.errors.items():
        e = torch.cat(parts)
        out["best_of_n"][name] = float(metrics.min_of_n(e).mean())
        out["mode"][name] = float(e[:, 0].mean())
    out["kp2d_error_px"] = _kp2d(got)
    out["spread_3d_mm"] = {"visible": _weighted(got.spread_visible),
                           "invisible": _weighted(got.spread_invisible)}
    out["percin"], out["mindist_px"], out["percin_points"] = _plausibility(got.percin)
    for name, parts in (("ground_truth", got.percin_gt), ("gt_on_mask", got.percin_gt_on_mask)):
        out[name] = dict(zip(("percin", "mindist_px", "points"), _plausibility(parts)))
    out.update(_distribution_scores(got))
    w1 = torch.cat(got.heatmap_w1) if got.heatmap_w1 else torch.zeros(0)
    out["heatmap_w1_px"] = float(w1.mean()) if len(w1) else float("nan")
    out["heatmap_w1_joints"] = int(len(w1))
    out.update(_occluded_right_person(got, w1))
    if got.pve_curve:
        curve = torch.cat(got.pve_curve)
        ns = [n for n in curve_ns if n <= curve.shape[1]]
        out["pve_vs_n"] = {str(k): v for k, v in metrics.min_of_n_curve(curve, ns).items()}
        out["pve_vs_n_crops"] = int(curve.shape[0])
    return out


def _kp2d(got: Collected) -> dict:
    """2DKP (px) of the mode, the samples and the detector, over every crop and over the crops
    where the detector found the right person."""
    right = {name: _weighted(parts) for name, parts in got.kp2d_right.items()}
    return {"mode": _weighted(got.kp2d_mode), "samples": _weighted(got.kp2d_samples),
            "detector": _weighted(got.kp2d_detector),
            "right_person": {**right, "crops": got.right_crops}}


def _occluded_right_person(got: Collected, w1: torch.Tensor) -> dict:
    """W1 on the occluded joints of the right-person crops, the W1 of an exact model over all
    and over those crops, and the 2D coverage of the occluded joints' ground truth by the
    hypotheses and by the heatmap (fractions), all crops and the right-person ones
    (docs/method.md §6 "Heatmap distribution")."""
    if not got.occluded_right:
        return {}
    right = torch.cat(got.occluded_right)
    exact = torch.cat(got.heatmap_w1_exact)

    def mean(values: torch.Tensor) -> float:
        return float(values.mean()) if len(values) else float("nan")
    covered = torch.cat(got.occluded_covered_2d).double()  # (K, 2, Q)

    def coverage(sel: torch.Tensor) -> dict:
        return {name: {f"q{q}": float(covered[sel, i, j].mean()) if sel.any() else float("nan")
                       for j, q in enumerate(CALIBRATION_Q)}
                for i, name in enumerate(("hypotheses", "heatmap"))}
    return {"heatmap_w1_right_person_px": mean(w1[right]),
            "heatmap_w1_right_person_joints": int(right.sum()),
            "heatmap_w1_exact_model_px": {"all": mean(exact), "right_person": mean(exact[right])},
            "coverage_2d_occluded": {"all": coverage(torch.ones_like(right)),
                                     "right_person": coverage(right)}}


def _by_visibility(values: torch.Tensor, visible: torch.Tensor) -> dict:
    """Mean of per-(image, joint) values (B, 17) over the visible and the invisible pairs."""
    def mean(sel: torch.Tensor) -> float:
        return float(values[sel].double().mean()) if sel.any() else float("nan")
    return {"visible": mean(visible), "invisible": mean(~visible)}


def _distribution_scores(got: Collected) -> dict:
    """Energy score (mm) and calibration (fractions in [0, 1]), visible and invisible apart."""
    if not got.energy:
        return {}
    visible = torch.cat(got.visible)
    covered = torch.cat(got.covered)  # (B, Q, 17)
    return {"energy_score_mm": _by_visibility(torch.cat(got.energy), visible),
            "calibration": {f"q{q}": _by_visibility(covered[:, i], visible)
                            for i, q in enumerate(CALIBRATION_Q)}}


def rounded(value, digits: int = 6):
    """Floats of a result rounded to `digits` decimals (reports must not depend on the last
    bits of multithreaded float reductions)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return round(value, digits) if isinstance(value, float) else value


def _fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1f}"


def write_report(out_dir: Path, result: dict, protocol: str, dataset: str, checkpoint: str,
                 got: Collected, provenance: dict | None = None,
                 paper_numbers: bool = False) -> Path:
    """metrics.json, report.md and the plots under out_dir; returns report.md. `provenance`
    (profile, trained_profile, body_models) is recorded in both; the paper's numbers are shown
    beside ours only with `paper_numbers` (a real test set under the paper profile)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = provenance or {}
    result = rounded({**result, "dataset": dataset, "protocol": protocol,
                      "checkpoint": checkpoint, **provenance})
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    paper = PAPER.get(protocol) if paper_numbers else None
    n = result["hypotheses"]
    rows = [("ours", result["best_of_n"], result["mode"])]
    if paper:
        rows.append(("paper", paper["best_of_100"], paper["mode"]))
    made_by = "".join(f", {k} `{v}`" for k, v in provenance.items())
    lines = [f"# Evaluation: {dataset} ({protocol} protocol)", "",
             f"Checkpoint `{checkpoint}`{made_by}; {result['crops']} crops, {n} hypotheses per "
             "crop (the mode first).", "",
             "## Distribution accuracy (Table 1), mm", "",
             f"| | best of {n}: MPJPE | PA-MPJPE | PVE | mode: MPJPE | PA-MPJPE | PVE |",
             "|---|---|---|---|---|---|---|"]
    keys = ("mpjpe", "pa_mpjpe", "pve")
    for name, best, mode in rows:
        cells = [_fmt(best[k]) for k in keys] + [_fmt(mode[k]) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _table2(result, paper)
    lines += ["", "2D errors in the pixels of a 256 crop, pooled over the visible (detector conf "
              "> 0.5) joints of every hypothesis; spread over all hypotheses; PercIn/MinDist "
              f"over every hypothesis (the mode included) of the invisible joints of the images "
              "with a person mask and at least eval.mask_min_invisible invisible joints "
              f"({result['percin_points']} points).", "",
              "## Distance to the detector's heatmap distribution", "",
              f"2D Wasserstein-1 between the projected random hypotheses and the stored heatmap "
              "samples of the occluded joints (detector confidence in (losses.mmd_min_conf, "
              "conventions.visible_conf], ground truth in the crop): "
              f"**{_fmt(result['heatmap_w1_px'])} px** (256-crop pixels, "
              f"{result['heatmap_w1_joints']} joints).", "", *_heatmap_coverage(result)]
    lines += _scores_section(result)
    if "pve_vs_n" in result:
        _plot_curve(out_dir / "pve_vs_n.png", result["pve_vs_n"], result["pve_vs_n_crops"])
        lines += ["## PVE against the number of hypotheses (Fig. S1)", "",
                  "| N | " + " | ".join(result["pve_vs_n"]) + " |",
                  "|---|" + "---|" * len(result["pve_vs_n"]),
                  "| PVE (mm) | " + " | ".join(_fmt(v) for v in result["pve_vs_n"].values())
                  + " |", "", "![PVE vs N](pve_vs_n.png)", ""]
    _plot_clouds(out_dir / "ambiguous_joint_clouds.png", got.examples)
    _plot_overlays(out_dir / "hypotheses.png", got.examples)
    lines += ["## Plots", "", "![clouds](ambiguous_joint_clouds.png)", "",
              "![hypotheses](hypotheses.png)", ""]
    if got.faces is not None and plot_meshes(out_dir / "meshes.png", got.examples, got.faces):
        lines += ["## Meshes (Fig. 5)", "",
                  "Per crop: the mode mesh over the crop, 4 sampled meshes, the side view of "
                  "these 5 hypotheses (turned 90° about the vertical axis through the mode's "
                  "pelvis: depth runs left to right) and every hypothesis of the most ambiguous "
                  "joint (red star: ground truth).", "", "![meshes](meshes.png)", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _table2(result: dict, paper: dict | None) -> list[str]:
    """Table 2 of report.md: 2DKP (with the detector's own), spread, PercIn / MinDist."""
    kp, spread = result["kp2d_error_px"], result["spread_3d_mm"]
    lines = ["", "## Consistency, diversity, plausibility (Table 2)", "",
             "| | 2DKP mode (px) | 2DKP samples (px) | 2DKP detector (px) | "
             "3D spread visible (mm) | 3D spread invisible (mm) | PercIn (%) | MinDist (px) |",
             "|---|---|---|---|---|---|---|---|",
             f"| ours | {_fmt(kp['mode'])} | {_fmt(kp['samples'])} | {_fmt(kp['detector'])} | "
             f"{_fmt(spread['visible'])} | {_fmt(spread['invisible'])} | "
             f"{_fmt(result['percin'])} | {result['mindist_px']:.3f} |",
             *(f"| {label} | | | | | | {_fmt(result[key]['percin'])} | "
               f"{result[key]['mindist_px']:.3f} |"
               for key, label in (("ground_truth", "ground truth (ours)"),
                                  ("gt_on_mask", "ours, joints whose ground truth is on the "
                                   "mask")))]
    if paper:
        table2 = [paper["kp2d"][0], paper["kp2d"][1], "", *paper["spread"],
                  paper.get("percin", ""), paper.get("mindist", "")]
        lines.append("| paper | " + " | ".join(str(v) for v in table2) + " |")
    else:
        lines += ["", "The paper's numbers are shown only for a real test set evaluated with "
                  "profile=paper; they do not apply here."]
    return lines


def _heatmap_coverage(result: dict) -> list[str]:
    """report.md: W1 on the right-person crops and the 2D coverage of the occluded joints."""
    if "coverage_2d_occluded" not in result:
        return []
    cov = result["coverage_2d_occluded"]
    exact = result["heatmap_w1_exact_model_px"]
    lines = [f"On the right-person crops: {_fmt(result['heatmap_w1_right_person_px'])} px "
             f"({result['heatmap_w1_right_person_joints']} joints). An exact model, every "
             f"hypothesis on the ground truth, would score {_fmt(exact['all'])} px "
             f"({_fmt(exact['right_person'])} on the right-person crops). Whether the heatmap is "
             "the distribution to match: the share of these joints whose ground truth lies in the "
             "central q % disc of the hypotheses and of the heatmap samples (2D; a calibrated "
             "distribution gives q / 100).", "",
             "| 2D coverage, occluded joints | crops | q50 | q90 |", "|---|---|---|---|"]
    for crops, part in cov.items():
        for name, values in part.items():
            lines.append(f"| {name} | {crops.replace('_', '-')} | {values['q50']:.3f} | "
                         f"{values['q90']:.3f} |")
    return lines + [""]


def _scores_section(result: dict) -> list[str]:
    """report.md: the 2DKP on the right-person crops, the energy score and the calibration."""
    right = result["kp2d_error_px"]["right_person"]
    fraction = metrics.RIGHT_PERSON_BOX_FRACTION
    lines = ["## Crops where the detector found the right person", "",
             f"{right['crops']} of {result['crops']} crops: the detector's median error over its "
             f"visible joints is at most {fraction:.0%} of the box ({fraction * EVAL_CROP:.1f} px "
             f"of {EVAL_CROP}).", "",
             "| 2DKP (px), visible joints | mode | samples | detector |", "|---|---|---|---|",
             f"| right-person crops | {_fmt(right['mode'])} | {_fmt(right['samples'])} | "
             f"{_fmt(right['detector'])} |", ""]
    if "energy_score_mm" not in result:
        return lines
    es, cal = result["energy_score_mm"], result["calibration"]
    lines += ["## Scores of the whole distribution", "",
              "Per (image, joint), 3D COCO-17 on the mid-hip, random hypotheses only (the mode "
              "excluded). Energy score: lower is better (accuracy and sharpness together). "
              "Calibration: the share of pairs whose ground truth lies in the central q % ball "
              "of the hypotheses (a calibrated model gives q / 100).", "",
              "| | visible | invisible |", "|---|---|---|",
              f"| energy score (mm) | {_fmt(es['visible'])} | {_fmt(es['invisible'])} |"]
    for key, part in cal.items():
        lines.append(f"| calibration {key[1:]} % (share) | {part['visible']:.3f} | "
                     f"{part['invisible']:.3f} |")
    return lines + [""]


def _plot_curve(path: Path, curve: dict, crops: int) -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([int(k) for k in curve], list(curve.values()), marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("number of hypotheses N")
    ax.set_ylabel("best-of-N PVE (mm)")
    ax.set_title(f"PVE vs N ({crops} crops)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _crop_grid(path: Path, examples: list[dict], draw) -> None:
    """A row of up to 8 crops, each drawn by draw(ax, example, points (H, 17, 2) crop px)."""
    shown = examples[:8]
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=(2.3 * len(shown), 2.6), squeeze=False)
    for ax, ex in zip(axes[0], shown):
        size = ex["image"].shape[-1]
        ax.imshow(crop_rgb(ex["image"]))
        draw(ax, ex, (ex["coco2d"].numpy() + 1) * size / 2)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_clouds(path: Path, examples: list[dict]) -> None:
    """Fig. 1: the 100 hypotheses of each crop's most ambiguous joint, and the ground truth."""
    _crop_grid(path, examples, draw_cloud)


def _plot_overlays(path: Path, examples: list[dict]) -> None:
    """All hypotheses' joints (dots) and the mode (rings) on each crop."""
    def draw(ax, ex, pts):
        ax.scatter(pts[1:, :, 0].ravel(), pts[1:, :, 1].ravel(), s=1, c="cyan", alpha=0.3)
        ax.scatter(pts[0, :, 0], pts[0, :, 1], s=10, facecolors="none", edgecolors="yellow")

    _crop_grid(path, examples, draw)
