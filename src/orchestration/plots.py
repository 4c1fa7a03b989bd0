"""The evaluation chart. Drawn on a bare `Figure` (no pyplot), so it needs no display and
leaves the process's matplotlib backend alone."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from src.orchestration.table import RELATIVE_METRICS

CHART_FILE = "mean_travel_time.png"


def plot_travel_times(table: pd.DataFrame, path: Union[str, Path], title: str = "") -> Path:
    """Grouped bars per scenario, one per controller, with the std over repeats as error bars:
    completed trips (left) and all planned trips (right)."""
    scenarios = list(dict.fromkeys(table["scenario"]))
    controllers = list(dict.fromkeys(table["controller"]))
    width = 0.8 / max(len(controllers), 1)
    x = np.arange(len(scenarios))
    fig = Figure(figsize=(max(7.0, 1.6 * len(scenarios) * 2 + 3), 4.2))
    axes = fig.subplots(1, 2, squeeze=False)
    for ax, metric, label in zip(axes[0], RELATIVE_METRICS, ("completed trips", "all planned trips")):
        for k, controller in enumerate(controllers):
            sub = table[table["controller"] == controller].set_index("scenario")
            means = [sub[f"{metric}_mean"].get(s, np.nan) for s in scenarios]
            stds = [sub[f"{metric}_std"].get(s, np.nan) for s in scenarios]
            stds = [0.0 if (s is None or np.isnan(s)) else s for s in stds]
            ax.bar(x + (k - (len(controllers) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=controller)
        ax.set_xticks(x)
        ax.set_xticklabels(scenarios, rotation=20, ha="right")
        ax.set_ylabel("mean travel time (s)")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(controllers), 6), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
