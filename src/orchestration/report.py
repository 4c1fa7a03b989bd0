"""An evaluation's results in a tracking backend, through the `Tracker` seam (src/tracking).

One parent run holds the table (CSV and `evaluation_table.json`), the chart, the per-run CSV,
the manifest and metrics `<controller>/<scenario>/<metric>`; one child run per controller
holds `<scenario>/<metric>` and `<scenario>/per_repeat/<travel time>` at step = repeat (the
`rl` child is tagged with the model URI, its resolution and its training run). Metric values
are means over repeats, with `<metric>_std` and `*_vs_<baseline>_pct` beside them. With a
`NullTracker` (`--no-mlflow`) only the files are written.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import pandas as pd

from src.orchestration.evaluate import MANIFEST_FILE
from src.orchestration.inputs import resolve_model, safe_name
from src.orchestration.plots import CHART_FILE, plot_travel_times
from src.orchestration.table import RELATIVE_METRICS, RUNS_FILE, TABLE_FILE, read_runs
from src.tracking.run import TrainingRun, git_commit
from src.tracking.tracker import Tracker

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def _metric_key(*parts: str) -> str:
    return "/".join(safe_name(p) for p in parts)


def _metrics_of(row: pd.Series, value_columns) -> Dict[str, float]:
    """A table row as metrics: `<metric>_mean` is logged as `<metric>`, the rest as named."""
    return {(column[: -len("_mean")] if column.endswith("_mean") else column): float(row[column])
            for column in value_columns}


def mlflow_tracker(experiment_name: str, tracking_uri: Optional[str] = None) -> TrainingRun:
    """The MLflow parent run of an evaluation (under `mlflow run`: the project's run)."""
    return TrainingRun(experiment_name, f"evaluation_{time.strftime('%Y%m%d_%H%M%S')}", tracking_uri)


def log_evaluation(
    tracker: Tracker,
    table: pd.DataFrame,
    runs: Optional[pd.DataFrame],
    out_dir: PathLike,
    title: str = "",
    tags: Optional[Mapping[str, Any]] = None,
    model: Optional[str] = None,
) -> Optional[str]:
    """Write the chart (and the table and per-run CSVs when missing) in `out_dir` and log the
    evaluation as `tracker`'s run, then end it (FAILED when logging fails). `runs` are the
    per-run records (`read_runs(out_dir)` when None); `model` overrides the manifest's model.
    Returns the run id (None for a `NullTracker`)."""
    status = "FAILED"
    try:
        out_dir = Path(out_dir)
        manifest = json.loads((out_dir / MANIFEST_FILE).read_text()) if (out_dir / MANIFEST_FILE).is_file() else {}
        if runs is None and (out_dir / RUNS_FILE).is_file():
            runs = read_runs(out_dir)
        elif runs is not None and not (out_dir / RUNS_FILE).is_file():
            runs.to_csv(out_dir / RUNS_FILE, index=False)
        table_csv = out_dir / TABLE_FILE
        if not table_csv.is_file():
            table.to_csv(table_csv, index=False)
        chart = plot_travel_times(table, out_dir / CHART_FILE, title=title)

        model_info = manifest.get("model")
        if model is not None and (not model_info or model_info.get("uri") != str(model)):
            model_info = resolve_model(model, tracker.tracking_uri)
        if model_info and not model_info.get("run_id"):  # a local file: the training run that wrote it
            folder = str(Path(model_info["local_path"]).resolve().parent)
            model_info = dict(model_info, run_id=tracker.find_run({"model_dir": folder}))

        scenarios = list(dict.fromkeys(table["scenario"])) if not table.empty else []
        controllers = list(dict.fromkeys(table["controller"])) if not table.empty else []
        value_columns = [c for c in table.columns if c not in ("scenario", "controller")]

        parent_tags = {"evaluation": "true", "git_commit": git_commit(), "scenarios": ",".join(scenarios),
                       "controllers": ",".join(controllers), "output_dir": str(out_dir.resolve())}
        if model_info:
            parent_tags.update({"model_uri": model_info["uri"], "model_resolved_uri": model_info["resolved_uri"],
                                "model_source_run_id": model_info.get("run_id")})
        parent_tags.update(dict(tags or {}))
        params = {"controllers": ",".join(controllers), "scenarios": ",".join(scenarios),
                  "repeats": manifest.get("repeats", int(table["repeats"].max()) if not table.empty else 0),
                  "end_time": manifest.get("end_time"), "sumo_seeds": manifest.get("sumo_seeds"),
                  "model": model_info["uri"] if model_info else None}
        for key in ("network_config", "scenarios_file", "execution_config", "net_file", "route_files"):
            if manifest.get(key):
                params[key] = manifest[key]
        tracker.log_params({k: v for k, v in params.items() if v is not None})
        tracker.set_tags(parent_tags)
        tracker.log_artifact(table_csv)
        tracker.log_artifact(chart)
        for extra in (RUNS_FILE, MANIFEST_FILE, "resolved_config.yaml"):
            if (out_dir / extra).is_file():
                tracker.log_artifact(out_dir / extra)
        tracker.log_table(table, "evaluation_table.json")
        for _, row in table.iterrows():
            tracker.log_metrics(0, {_metric_key(row["controller"], row["scenario"], k): v
                                    for k, v in _metrics_of(row, value_columns).items()})

        for controller in controllers:
            child = tracker.child(controller)
            child_status = "FAILED"
            try:
                child_params = {"controller": controller, "scenarios": ",".join(scenarios),
                                "repeats": params["repeats"], "end_time": params["end_time"]}
                child_tags = {"evaluation": "true", "controller": controller}
                if controller == "rl" and model_info:
                    child_params["model"] = model_info["uri"]
                    child_tags.update({
                        "model_uri": model_info["uri"],
                        "model_resolved_uri": model_info["resolved_uri"],
                        "model_source_run_id": model_info.get("run_id"),
                        "model_registered_name": model_info.get("registered_name"),
                        "model_version": model_info.get("version"),
                        "model_local_path": model_info.get("local_path"),
                    })
                child.log_params({k: v for k, v in child_params.items() if v is not None})
                child.set_tags(child_tags)
                for _, row in table[table["controller"] == controller].iterrows():
                    child.log_metrics(0, {_metric_key(row["scenario"], k): v
                                          for k, v in _metrics_of(row, value_columns).items()})
                if runs is not None and not runs.empty:  # each repeat's value, step = repeat index
                    for _, run in runs[runs["controller"] == controller].iterrows():
                        child.log_metrics(int(run["repeat"]), {_metric_key(run["scenario"], "per_repeat", m): run[m]
                                                               for m in RELATIVE_METRICS})
                child_status = "FINISHED"
            finally:
                child.end(child_status)
        status = "FINISHED"
    finally:
        tracker.end(status)
    return tracker.run_id
