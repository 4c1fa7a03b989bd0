"""The learning curve of a training run: travel time against training steps.

Training episodes (per scenario) and held-out evaluations go into one CSV and one chart, with
the baselines' values as horizontal lines when they are known (`rl/benchmark.py` passes
them), so "does it learn, and past what" is one picture in the run's MLflow artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import pandas as pd

CURVE_CSV = "learning_curve.csv"
CURVE_PNG = "learning_curve.png"


def curve_rows(episodes: Sequence[Mapping[str, Any]], evaluations: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per training episode (`source=train`) and per evaluation (`source=eval`)."""
    rows: List[Dict[str, Any]] = []
    for e in episodes:
        rows.append({"source": "train", "step": int(e["step"]), "scenario": e.get("scenario"),
                     "mean_travel_time": e.get("mean_travel_time"), "mean_travel_time_all": e.get("mean_travel_time_all")})
    for e in evaluations:
        rows.append({"source": "eval", "step": int(e["step"]), "scenario": "held-out mean",
                     "mean_travel_time": e.get("eval/mean_travel_time"),
                     "mean_travel_time_all": e.get("eval/mean_travel_time_all")})
    return pd.DataFrame(rows, columns=["source", "step", "scenario", "mean_travel_time", "mean_travel_time_all"])


def plot_curves(curves: Mapping[str, pd.DataFrame], out_png: Path, baselines: Optional[Mapping[str, float]] = None,
                metric: str = "mean_travel_time_all", title: str = "") -> Path:
    """One chart: each curve's training episodes (thin, per scenario) and evaluations (thick),
    each baseline a horizontal line. `curves` maps a label (a run, a seed) to `curve_rows`."""
    import matplotlib  # here, not at import: every training process would pay for it at start

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (label, table) in enumerate(curves.items()):
        color = f"C{k % 10}"
        for scenario, group in table[table["source"] == "train"].groupby("scenario"):
            ax.plot(group["step"], group[metric], lw=0.7, alpha=0.35, color=color)
        held_out = table[table["source"] == "eval"]
        if not held_out.empty:
            ax.plot(held_out["step"], held_out[metric], "o-", lw=2, color=color, label=f"{label}: evaluation")
    for k, (name, value) in enumerate(sorted((baselines or {}).items())):
        ax.axhline(value, ls="--", lw=1.2, color=f"C{(k + 5) % 10}", label=name)
    ax.set_xlabel("training steps (policy decisions); thin lines: training episodes")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (s)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:  # a run with training episodes only has no labelled line
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def write_learning_curve(episodes: Sequence[Mapping[str, Any]], evaluations: Sequence[Mapping[str, Any]],
                         out_dir: Path, baselines: Optional[Mapping[str, float]] = None,
                         metric: str = "mean_travel_time_all") -> List[Path]:
    """Write `learning_curve.csv` and `.png` into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = curve_rows(episodes, evaluations)
    csv = out_dir / CURVE_CSV
    table.to_csv(csv, index=False)
    if table.empty:
        return [csv]
    return [csv, plot_curves({"this run": table}, out_dir / CURVE_PNG, baselines, metric)]
