"""One MLflow run per training or evaluation invocation, logged from the main process only.

Metrics are buffered and written with `log_batch` (one call costs ~3 ms on SQLite and
~50 ms over HTTP), so tracking stays a small share of training time. SubprocVecEnv
workers never talk to MLflow: episode metrics reach this process through `infos`.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from stable_baselines3.common.logger import KVWriter

from src.rl.normalization import NORMALIZATION_NAME, read_normalization
from src.tracking.store import REPO_ROOT, ensure_experiment, ensure_store

logger = logging.getLogger(__name__)

#: The experiment `mlflow run` uses when none is named.
DEFAULT_EXPERIMENT_ID = "0"
#: MLflow limits: entities per log_batch call and characters per param value.
BATCH_LIMIT = 900
PARAM_VALUE_LIMIT = 6000


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MetricsBuffer:
    """Collects metrics and writes them in batches (every `flush_s` seconds or when full)."""

    def __init__(self, client: MlflowClient, run_id: str, flush_s: float = 15.0) -> None:
        self.client = client
        self.run_id = run_id
        self.flush_s = flush_s
        self.pending: List[Metric] = []
        self.last_flush = time.monotonic()
        self.calls = 0

    def add(self, step: int, values: Mapping[str, float]) -> None:
        now_ms = int(time.time() * 1000)
        for key, value in values.items():
            if value is None or not math.isfinite(float(value)):
                continue
            self.pending.append(Metric(key, float(value), now_ms, int(step)))
        if len(self.pending) >= BATCH_LIMIT or time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def __call__(self, step: int, values: Mapping[str, float]) -> None:
        self.add(step, values)

    def flush(self) -> None:
        while self.pending:
            chunk, self.pending = self.pending[:BATCH_LIMIT], self.pending[BATCH_LIMIT:]
            self.client.log_batch(self.run_id, metrics=chunk)
            self.calls += 1
        self.last_flush = time.monotonic()


class MLflowOutputFormat(KVWriter):
    """SB3 logger output that sends numeric values (train/*, rollout/*, ...) to a MetricsBuffer."""

    def __init__(self, buffer: MetricsBuffer) -> None:
        self.buffer = buffer

    def write(self, key_values: Dict[str, Any], key_excluded: Dict[str, Any], step: int = 0) -> None:
        numeric = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if "mlflow" in excluded:
                continue
            # numbers.Real covers numpy scalars (SB3's train/approx_kl is an np.float32)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                numeric[key] = float(value)
        self.buffer.add(step, numeric)

    def close(self) -> None:
        self.buffer.flush()


def flatten(data: Any, prefix: str = "") -> Dict[str, str]:
    """Nested dicts/lists to dotted keys, values as strings (MLflow params)."""
    items: Dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            items.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in data):
        for k, value in enumerate(data):
            items.update(flatten(value, f"{prefix}{k}."))
    else:
        items[prefix[:-1]] = str(list(data) if isinstance(data, tuple) else data)
    return items


def start_run(experiment_name: str, run_name: str, tracking_uri: Optional[str] = None):
    """Open an MLflow run on the chosen store (registry included), in our experiment, named ours.

    Under `mlflow run` (MLFLOW_RUN_ID set) its run is used when the user chose its
    experiment (`mlflow run --experiment-name`); without one `mlflow run` lands in
    `Default`, so our own run is opened in `experiment_name` and the launcher's run gets a
    `training_run_id` tag.
    """
    uri = ensure_store(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    launcher_id = os.environ.get("MLFLOW_RUN_ID")
    if launcher_id:
        launcher = client.get_run(launcher_id)
        if launcher.info.experiment_id != DEFAULT_EXPERIMENT_ID:
            run = mlflow.start_run(run_id=launcher_id)
            client.set_tag(launcher_id, "mlflow.runName", run_name)
            return run, uri
        del os.environ["MLFLOW_RUN_ID"]  # our own run below; the launcher keeps its own
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    mlflow.set_experiment(experiment_id=ensure_experiment(uri, experiment_name))
    run = mlflow.start_run(run_name=run_name)
    if launcher_id:
        client.set_tag(launcher_id, "training_run_id", run.info.run_id)
        client.set_tag(launcher_id, "training_experiment", experiment_name)
        client.set_tag(run.info.run_id, "launcher_run_id", launcher_id)
    return run, uri


class TrainingRun:
    """Lifecycle of one MLflow run (the MLflow `Tracker`): a training run, or an evaluation's
    parent run and the child runs nested in it."""

    def __init__(self, experiment_name: str, run_name: str, tracking_uri: Optional[str] = None) -> None:
        run, uri = start_run(experiment_name, run_name, tracking_uri)
        self._attach(run, uri)
        logger.info("MLflow run %s in experiment %r (%s)", self.run_id, experiment_name, self.tracking_uri)

    def _attach(self, run: Any, tracking_uri: str) -> None:
        self.run, self.tracking_uri = run, tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.run_id = run.info.run_id
        self.metrics = MetricsBuffer(self.client, self.run_id)

    @property
    def experiment_name(self) -> str:
        return self.client.get_experiment(self.run.info.experiment_id).name

    def child(self, run_name: str) -> "TrainingRun":
        """A run nested under this one; MLflow nests under the active run, so this run must be
        the active one and the child must end before it."""
        child = object.__new__(TrainingRun)
        child._attach(mlflow.start_run(run_name=run_name, nested=True), self.tracking_uri)
        return child

    def find_run(self, tags: Mapping[str, str]) -> Optional[str]:
        """Best effort (None when the store cannot be searched): a missing link is not an error."""
        condition = " and ".join(f"tags.{key} = '{value}'" for key, value in tags.items())
        try:
            experiments = [e.experiment_id for e in self.client.search_experiments()]
            if not experiments:
                return None
            runs = self.client.search_runs(experiments, filter_string=condition, max_results=1)
        except Exception:  # noqa: BLE001
            return None
        return runs[0].info.run_id if runs else None

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.metrics.add(step, values)

    def output_formats(self) -> List[Any]:
        return [MLflowOutputFormat(self.metrics)]

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log the values that ran. A key the run already holds (a `mlflow run` parameter) with
        another text is logged again as `ran.<key>`, so the record never shows only the
        launcher's spelling of a value."""
        existing = self.client.get_run(self.run_id).data.params
        entries = []
        for key, value in params.items():
            key, text = key[:250], str(value)[:PARAM_VALUE_LIMIT]
            if key not in existing:
                entries.append(Param(key, text))
            elif existing[key] != text:
                entries.append(Param(f"ran.{key}"[:250], text))
        for start in range(0, len(entries), 100):
            self.client.log_batch(self.run_id, params=entries[start:start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        entries = [RunTag(k, str(v)[:5000]) for k, v in tags.items() if v is not None]
        if entries:
            self.client.log_batch(self.run_id, tags=entries)

    def log_config(self, resolved_config_file: Path, scenarios: Sequence[Mapping[str, Any]],
                   source_files: Mapping[str, str], out_dir: Path) -> None:
        """The resolved config (the model folder's own file), the scenario list and the source files."""
        config_dir = Path(out_dir) / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "scenarios.yaml").write_text(yaml.safe_dump({"scenarios": [dict(s) for s in scenarios]}, sort_keys=False))
        self.client.log_artifact(self.run_id, str(resolved_config_file), "config")
        self.client.log_artifact(self.run_id, str(config_dir / "scenarios.yaml"), "config")
        for role, path in source_files.items():
            if path and Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path), f"config/source/{role}")

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: Path, artifact_path: Optional[str] = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_table(self, table: Any, artifact_file: str) -> None:
        mlflow.log_table(table, artifact_file, run_id=self.run_id)

    def _log_normalization(self, model_zip: Path) -> None:
        """The normalisation statistics inside the zip, also as a readable artifact beside it."""
        state = read_normalization(model_zip)
        if state is None:
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / NORMALIZATION_NAME
            path.write_text(json.dumps(state, indent=1))
            self.client.log_artifact(self.run_id, str(path), "model")

    def log_policy(self, model_zip: Path, registered_model_name: Optional[str],
                   version_tags: Optional[Mapping[str, str]] = None,
                   alias: Optional[str] = None) -> Tuple[Optional[str], str]:
        """Log the final policy as a file and as a pyfunc model; register it as a new version
        with `version_tags`, and point `alias` at it when given.

        Returns (registered version or None, model URI).
        """
        self.client.log_artifact(self.run_id, str(model_zip), "model")
        self._log_normalization(model_zip)
        with warnings.catch_warnings():  # MLflow's advice on type hints / pickling does not apply here
            warnings.simplefilter("ignore", UserWarning)
            # imported here, under the filter: MLflow gives that advice when the class is defined,
            # which at the top would print it on every start of a training or evaluation script
            from src.tracking.pyfunc import TrafficPolicyModel

            pyfunc_logger = logging.getLogger("mlflow.pyfunc")
            level = pyfunc_logger.level
            pyfunc_logger.setLevel(logging.ERROR)
            try:
                info = mlflow.pyfunc.log_model(
                    name="policy",
                    python_model=TrafficPolicyModel(),
                    artifacts={"policy": str(model_zip)},
                    registered_model_name=registered_model_name,
                    pip_requirements=["stable-baselines3", "torch", "numpy"],
                )
            finally:
                pyfunc_logger.setLevel(level)
        version = getattr(info, "registered_model_version", None)
        if version is not None and registered_model_name:
            for key, value in (version_tags or {}).items():
                self.client.set_model_version_tag(registered_model_name, str(version), key, str(value))
            if alias:
                self.client.set_registered_model_alias(registered_model_name, alias, str(version))
        return (str(version) if version is not None else None), info.model_uri

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with `status`; if the last metrics cannot be written it ends FAILED."""
        try:
            self.metrics.flush()
        except Exception:
            logger.exception("could not write the last metrics; the run ends FAILED")
            status = "FAILED"
            raise
        finally:
            mlflow.end_run(status=status)
