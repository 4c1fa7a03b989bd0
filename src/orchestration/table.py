"""The evaluation table: per-run records in matrix order, and per scenario x controller the
mean and std over repeats with the change of the travel times against the baselines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Union

import pandas as pd

from src.metrics import METRIC_NAMES

#: Controllers a change in percent is computed against (when they were run).
BASELINES = ("fixed", "actuated")
#: Metrics whose change against the baselines is reported.
RELATIVE_METRICS = ("mean_travel_time", "mean_travel_time_all", "mean_time_loss_all")
#: RESCO's "delay": time loss plus insertion delay over every planned trip, never-inserted ones
#: included (`mean_time_loss_all` of `src.metrics`).
DELAY_LABEL = "delay (RESCO)"
TABLE_FILE = "evaluation.csv"
RUNS_FILE = "evaluation_runs.csv"


def runs_frame(records: Sequence[Mapping[str, Any]], scenarios: Sequence[str], controllers: Sequence[str]) -> pd.DataFrame:
    """Per-run records as a frame in matrix order (scenario, controller, repeat)."""
    columns = ["scenario", "controller", "repeat", "sumo_seed", *METRIC_NAMES, "wall_time_s", "error", "output_dir",
               "env_params"]
    frame = pd.DataFrame(list(records))
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    frame = frame[columns]
    order_s = {name: k for k, name in enumerate(scenarios)}
    order_c = {name: k for k, name in enumerate(controllers)}
    frame = frame.assign(_s=frame["scenario"].map(order_s), _c=frame["controller"].map(order_c))
    return frame.sort_values(["_s", "_c", "repeat"]).drop(columns=["_s", "_c"]).reset_index(drop=True)


def read_runs(out_dir: Union[str, Path]) -> pd.DataFrame:
    """The per-run records an evaluation wrote in `out_dir`."""
    return pd.read_csv(Path(out_dir) / RUNS_FILE, keep_default_na=False, na_values=[""])


def summarize_runs(runs: pd.DataFrame, scenarios: Sequence[str], controllers: Sequence[str]) -> pd.DataFrame:
    """One row per scenario x controller: mean and std (sample, ddof 1) of every metric over
    the repeats, and the change of the travel times against fixed and actuated in percent."""
    ok = runs[runs["error"].fillna("") == ""] if "error" in runs else runs
    rows = []
    for scenario in scenarios:
        for controller in controllers:
            sub = ok[(ok["scenario"] == scenario) & (ok["controller"] == controller)]
            if sub.empty:
                continue
            row: Dict[str, Any] = {"scenario": scenario, "controller": controller, "repeats": int(len(sub))}
            for name in METRIC_NAMES:
                values = pd.to_numeric(sub[name], errors="coerce")
                row[f"{name}_mean"] = float(values.mean())
                row[f"{name}_std"] = float(values.std(ddof=1)) if values.count() > 1 else math.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for name in RELATIVE_METRICS:
        for baseline in BASELINES:
            reference = table[table["controller"] == baseline].set_index("scenario")[f"{name}_mean"]
            base = table["scenario"].map(reference)
            table[f"{name}_vs_{baseline}_pct"] = (table[f"{name}_mean"] / base - 1.0) * 100.0
    return table


def format_table(table: pd.DataFrame) -> str:
    """The main columns as text: 'mean ± std' of the travel times, completion, change vs baselines."""
    if table.empty:
        return "(no results)"
    shown = pd.DataFrame({"scenario": table["scenario"], "controller": table["controller"], "n": table["repeats"]})

    def pm(name: str, digits: int = 1) -> pd.Series:
        mean, std = table[f"{name}_mean"], table[f"{name}_std"]
        return pd.Series([f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if not math.isnan(s) else "")
                          for m, s in zip(mean, std)], index=table.index)

    shown["travel_time"] = pm("mean_travel_time")
    shown["travel_time_all"] = pm("mean_travel_time_all")
    shown[DELAY_LABEL] = pm("mean_time_loss_all")
    shown["waiting_time"] = pm("mean_waiting_time")
    shown["completion"] = pm("completion_rate", 3)
    shown["throughput/h"] = table["throughput_per_hour_mean"].map(lambda v: f"{v:.0f}")
    shown["teleports"] = table["teleports_mean"].map(lambda v: f"{v:.1f}")
    for baseline in BASELINES:
        column = f"mean_travel_time_vs_{baseline}_pct"
        if column in table and table[column].notna().any():
            shown[f"vs_{baseline}"] = table[column].map(lambda v: "" if math.isnan(v) else f"{v:+.1f}%")
    note = (f"\n{DELAY_LABEL}: mean time loss + insertion delay over all planned trips, never-inserted ones "
            "included (RESCO's definition); travel_time: completed trips, travel_time_all: all planned trips")
    return shown.to_string(index=False) + note
