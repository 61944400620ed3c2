"""The ablation report: Tables 3 and S2 in the paper's layout with our numbers (mean ± sd over
the seeds) beside the paper's EMDB ones (Tables S1, S2), the measures the paper's claims rest on
(distance to the detector's heatmap distribution on occluded joints, PercIn / MinDist, visible
vs invisible 3D spread, energy score, calibration), min-of-N curves, and each direction the
paper claims checked against twice its standard error (eval/ablation_stats.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from .ablation_stats import MARGIN, check_directions, over_seeds, summarize  # noqa: E402

# The paper's EMDB best-of-100 MPJPE / PA-MPJPE / PVE (mm): Table S1 (the Table 3 ladder) and
# Table S2 (supervision of random hypotheses; 2D-all at λ = 1e-3 is the "+ RealNVP" row).
PAPER_EMDB = {
    "prohmr": (76.7, 47.1, 87.3), "bbox": (73.1, 46.5, 82.3), "pose_condition": (69.0, 44.0, 77.9),
    "realnvp": (68.5, 43.1, 77.5), "mmd": (63.9, 40.7, 72.4), "mask": (63.6, 40.9, 72.0),
    "unsupervised": (67.8, 43.2, 76.8), "l2d_vis": (67.9, 42.3, 76.6),
}


def _percent(*keys: str):
    """The share at `keys` of metrics.json (a fraction in [0, 1]) in per cent."""
    def get(metrics: dict) -> float:
        for key in keys:
            metrics = metrics[key]
        return 100 * metrics
    return get


ACCURACY_COLUMNS = (("MPJPE", "best_of_n.mpjpe"), ("PA-MPJPE", "best_of_n.pa_mpjpe"),
                    ("PVE", "best_of_n.pve"), ("paper EMDB PVE", None),
                    ("mode PVE", "mode.pve"), ("2DKP mode (px)", "kp2d_error_px.mode"),
                    ("2DKP samples (px)", "kp2d_error_px.samples"))
DISTRIBUTION_COLUMNS = (("W1 to heatmaps (px)", "heatmap_w1_px"),
                        ("spread vis (mm)", "spread_3d_mm.visible"),
                        ("spread invis (mm)", "spread_3d_mm.invisible"),
                        ("PercIn (%)", "percin"), ("MinDist (px)", "mindist_px"),
                        ("ES vis (mm)", "energy_score_mm.visible"),
                        ("ES invis (mm)", "energy_score_mm.invisible"),
                        *((f"cal. q{q} invis (%)", _percent("calibration", f"q{q}", "invisible"))
                          for q in (50, 90)),
                        # 2D, occluded joints of the right-person crops (docs/method.md §6)
                        *((f"2D cal. q{q} occl. (%)", _percent("coverage_2d_occluded",
                                                               "right_person", "hypotheses",
                                                               f"q{q}"))
                          for q in (50, 90)))
DIGITS = {"mindist_px": 2}
RUN_KEY = re.compile(r"^(?P<variant>.+)-s(?P<seed>\d+)$")


def _seed_counts(names: list[str], results: dict) -> str:
    counts = sorted({len(results[n]) for n in names if results.get(n)})
    return ", ".join(map(str, counts)) or "0"


def _table(names: list[str], labels: dict, results: dict, columns: tuple,
           paper: bool = False) -> list[str]:
    """One row per variant, each cell mean ± sd over its seeds; a row with fewer seeds than the
    most any row has says how many it has."""
    most = max((len(results.get(n, {})) for n in names), default=0)
    lines = ["| Models | " + " | ".join(c for c, _ in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name in names:
        runs = results.get(name)
        label = labels[name] + (f" (n = {len(runs)})" if runs and len(runs) < most else "")
        cells = []
        for _, key in columns:
            if key is None:
                cells.append(f"{PAPER_EMDB[name][2]:.1f}" if paper and name in PAPER_EMDB
                             else "—")
            elif not runs:
                cells.append("not run" if not cells else "")
            else:
                cells.append(over_seeds(runs, key).text(DIGITS.get(key, 1)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _mean_curve(runs: dict) -> dict[int, float]:
    """Min-of-N PVE against N, averaged over the seeds that have each N."""
    per_n: dict[int, list[float]] = {}
    for m in runs.values():
        for n, v in (m.get("pve_vs_n") or {}).items():
            per_n.setdefault(int(n), []).append(float(v))
    return {n: float(np.mean(vs)) for n, vs in sorted(per_n.items())}


def _plot_curves(path: Path, tables: dict[str, list[str]], labels: dict, results: dict) -> None:
    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4), squeeze=False)
    for ax, (title, names) in zip(axes[0], tables.items()):
        for name in names:
            curve = _mean_curve(results.get(name, {}))
            if curve:
                ax.plot(list(curve), list(curve.values()), marker="o", label=labels[name])
        ax.set(xscale="log", xlabel="number of hypotheses", ylabel="min PVE (mm), seed mean",
               title=title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax, x, names: list[str], results: dict, key: str, **style) -> None:
    s = [over_seeds(results[n], key) for n in names]
    ax.bar(x, [v.mean for v in s], yerr=[0 if np.isnan(v.sd) else v.sd for v in s], capsize=3,
           **style)


def _plot_distribution(path: Path, names: list[str], labels: dict, results: dict) -> None:
    names = [n for n in names if results.get(n)]
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    _bars(ax1, x, names, results, "heatmap_w1_px", color="tab:purple")
    ax1.set(ylabel="W1 to heatmap samples (px)", title="occluded joints (mean ± sd over seeds)")
    for offset, part, colour in ((-0.2, "visible", "tab:blue"), (0.2, "invisible", "tab:red")):
        _bars(ax2, x + offset, names, results, f"spread_3d_mm.{part}", width=0.4, label=part,
              color=colour)
    ax2.set(ylabel="3D spread (mm)", title="diversity: visible vs invisible joints")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.set_xticks(x, [labels[n] for n in names], rotation=30, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _num(v: float) -> str:
    return "—" if v is None or np.isnan(v) else f"{v:.2f}"


def _directions(checks: list[dict]) -> list[str]:
    lines = ["| claim of the paper | metric | a | b | mean a | mean b | a − b | SE | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        failed = c["verdict"] in ("not significant", "reversed", "differs")
        verdict = f"**{c['verdict']}**" if failed else c["verdict"]
        lines.append(f"| {c['claim']} | {c['metric']} | {c['a']} | {c['b']} | "
                     f"{_num(c['mean_a'])} | {_num(c['mean_b'])} | {_num(c['difference'])} | "
                     f"{_num(c['se'])} | {verdict} |")
    return lines


def _timing(timing: dict) -> list[str]:
    """Per variant: train and eval seconds, mean ± sd over the runs that were timed."""
    per: dict[str, dict[str, list[float]]] = {}
    for key, t in timing.items():
        match = RUN_KEY.match(key)
        if match:
            entry = per.setdefault(match["variant"], {"train": [], "eval": []})
            for step in entry:
                entry[step].append(t.get(step))
    lines = ["| variant | train (s) | eval (s) | runs timed |", "|---|---|---|---|"]
    lines += [f"| {v} | {summarize(t['train']).text(0)} | {summarize(t['eval']).text(0)} | "
              f"{len(t['train'])} |" for v, t in per.items()]
    total = sum(t.get("train", 0) + t.get("eval", 0) for k, t in timing.items()
                if RUN_KEY.match(k))
    return lines + ["", f"Sum over all timed runs: {total:.0f} s (run `ablation.jobs` at a "
                    "time, so the wall clock is about that divided by the jobs)."]


def write_ablation_report(out_dir: Path, ablation: DictConfig, results: dict, timing: dict,
                          quick: bool) -> Path:
    """`report.md`, `results.json` and the plots under out_dir from `results`
    ({variant: {seed: metrics.json}}); returns report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = {name: str(v.label) for name, v in ablation.variants.items()}
    table3, table_s2 = list(ablation.table3), list(ablation.table_s2)
    every = list(dict.fromkeys(table3 + table_s2))
    setting = ablation.quick if quick else ablation.full
    checks = check_directions(results)
    (out_dir / "results.json").write_text(json.dumps(
        {"results": {v: {str(s): m for s, m in r.items()} for v, r in results.items()},
         "directions": checks, "timing": timing}, indent=2) + "\n")
    any_result = next((m for r in results.values() for m in r.values()), {})
    lines = [f"# Ablation on the synthetic world ({setting.name})", "",
             "SYNTHETIC data: our numbers are comparable between rows, not with the paper's. "
             "The paper's EMDB numbers (Tables S1, S2) are beside ours to show the direction "
             "each row should move.", "",
             f"Every variant: the same budget, overrides `{' '.join(setting.overrides)}`, "
             "trained and evaluated once per seed (`train.seed` = `eval.seed` = the seed; the "
             f"synthetic world and stores are the same); evaluated on {ablation.dataset} "
             f"({any_result.get('crops', '—')} crops, best of "
             f"{any_result.get('hypotheses', '—')} hypotheses; errors in mm). Each cell: mean "
             "± sample sd over the seeds; — where a run's metrics lack the key.", ""]
    if quick:
        lines += ["**Quick setting: checks the machinery only; the numbers mean nothing.**", ""]
    lines += [f"## Table 3: components added successively (n = {_seed_counts(table3, results)} "
              "seeds)", ""] + _table(table3, labels, results, ACCURACY_COLUMNS, paper=True) + \
        ["", f"## Table S2: supervising random hypotheses, no mask loss (n = "
         f"{_seed_counts(table_s2, results)} seeds)", ""] + \
        _table(table_s2, labels, results, ACCURACY_COLUMNS, paper=True) + \
        ["", f"## The distribution measures (n = {_seed_counts(every, results)} seeds)", ""] + \
        _table(every, labels, results, DISTRIBUTION_COLUMNS) + \
        ["", "2DKP: error of the mode / the random hypotheses on visible joints (256-crop px). "
         "W1 to heatmaps: 2D Wasserstein-1 distance between the projected random hypotheses "
         "and the simulated detector's heatmap samples of the occluded joints (256-crop px). "
         "Spread: mean distance of the 3D joints of the hypotheses to their mean, on joints "
         "the detector sees (conf > 0.5) and does not. PercIn / MinDist: invisible joints' "
         "hypotheses inside the person mask / their mean distance to it. ES: energy score per "
         "joint (lower is better). cal. q: share of invisible joints whose ground truth lies in "
         "the central q % region of their hypotheses (calibrated: q).", "",
         "## Expected directions", "",
         f"a − b: difference of the seed means; SE = sqrt(sd_a²/n_a + sd_b²/n_b). \"holds\": "
         f"the difference goes the paper's way by ≥ {MARGIN:g} SE (for \"unchanged\": stays "
         f"within {MARGIN:g} SE); \"reversed\": it goes the other way by ≥ {MARGIN:g} SE; "
         "\"not significant\": in between; \"one seed\": no SE.", ""] + _directions(checks)
    _plot_curves(out_dir / "min_of_n.png", {"Table 3": table3, "Table S2": table_s2}, labels,
                 results)
    _plot_distribution(out_dir / "distribution.png", every, labels, results)
    lines += ["", "## Plots", "", "Min-of-N PVE against the number of hypotheses:", "",
              "![min of N](min_of_n.png)", "",
              "Distance to the heatmap distribution, and visible vs invisible spread:", "",
              "![distribution](distribution.png)", "", "## Wall-clock time per run", ""]
    lines += _timing(timing)
    lines += ["", "Per-run reports (all metrics and plots): "
              f"`<reports>/{setting.name}-<variant>-s<seed>/<checkpoint>/{ablation.dataset}/`. "
              "What these numbers mean and the investigation of the directions that do not "
              "reproduce: `docs/ablation.md`.", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
