"""One MLflow run per training or evaluation invocation, logged from the main process only.

Metrics are buffered and sent in batches (one `log_batch` costs ~3 ms on SQLite and ~50 ms
over HTTP); a training run sends everything through its journal and courier
(`src/tracking/delivery.py`), so the server's speed or absence never holds training up.
SubprocVecEnv workers never talk to MLflow: episode metrics reach this process through `infos`.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import mlflow
import yaml
from mlflow import MlflowClient
from stable_baselines3.common.logger import KVWriter

from src.tracking.delivery import BATCH_LIMIT, DELIVER, Courier, Delivery, Journal
from src.tracking.store import REPO_ROOT, ensure_experiment, ensure_store, set_experiment_tag_once

logger = logging.getLogger(__name__)

#: The experiment `mlflow run` uses when none is named.
DEFAULT_EXPERIMENT_ID = "0"
#: MLflow's limit of characters per param value.
PARAM_VALUE_LIMIT = 6000
#: The experiment's description (what MLflow's UI shows as its note) and a child run's parent.
NOTE_TAG, PARENT_TAG = "mlflow.note.content", "mlflow.parentRunId"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MetricsBuffer:
    """Collects metrics and sends them in batches (every `flush_s` seconds or when full)."""

    def __init__(self, send: Callable[[Mapping[str, Any]], None], flush_s: float = 15.0) -> None:
        self.send = send
        self.flush_s = flush_s
        self.pending: List[list] = []
        self.last_flush = time.monotonic()
        self.calls = 0

    def add(self, step: int, values: Mapping[str, float]) -> None:
        now_ms = int(time.time() * 1000)
        for key, value in values.items():
            if value is None or not math.isfinite(float(value)):
                continue
            self.pending.append([key, float(value), now_ms, int(step)])
        if len(self.pending) >= BATCH_LIMIT or time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def __call__(self, step: int, values: Mapping[str, float]) -> None:
        self.add(step, values)

    def flush(self) -> None:
        if self.pending:
            self.send({"op": "metrics", "metrics": self.pending})
            self.pending = []
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


def start_run(experiment_name: str, run_name: str, tracking_uri: Optional[str] = None,
              parent_run_id: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None) -> Tuple[str, str, str]:
    """Open an MLflow run on the chosen store (registry included), in our experiment, named ours,
    nested under `parent_run_id` when given (a sweep's trial), with `tags` from its first moment
    (a sweep finds a killed worker's trial run by them). Returns (run id, tracking URI,
    experiment id).

    The run is made with the client, not as MLflow's "active run": nothing ends it behind our
    back (MLflow ends an active run FINISHED at exit), and the courier thread logs to it.
    Under `mlflow run` (MLFLOW_RUN_ID set) its run is used when the user chose its
    experiment (`mlflow run --experiment-name`); without one `mlflow run` lands in
    `Default`, so our own run is opened in `experiment_name` and the launcher's run gets a
    `training_run_id` tag.
    """
    from mlflow.entities import RunTag
    from mlflow.tracking.context.registry import resolve_tags

    uri = ensure_store(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    first_tags = {k: str(v) for k, v in (tags or {}).items()}
    launcher_id = None if parent_run_id else os.environ.get("MLFLOW_RUN_ID")  # a trial never takes the launcher's
    if launcher_id:
        launcher = client.get_run(launcher_id)
        if launcher.info.experiment_id != DEFAULT_EXPERIMENT_ID:
            client.log_batch(launcher_id, tags=[RunTag(k, v) for k, v in {"mlflow.runName": run_name, **first_tags}.items()])
            return launcher_id, uri, launcher.info.experiment_id
        del os.environ["MLFLOW_RUN_ID"]  # our own run below; the launcher keeps its own
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    experiment_id = ensure_experiment(uri, experiment_name)
    if parent_run_id:
        first_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, tags=resolve_tags(first_tags), run_name=run_name)
    if launcher_id:
        client.set_tag(launcher_id, "training_run_id", run.info.run_id)
        client.set_tag(launcher_id, "training_experiment", experiment_name)
        client.set_tag(run.info.run_id, "launcher_run_id", launcher_id)
    return run.info.run_id, uri, experiment_id


class TrainingRun:
    """Lifecycle of one MLflow run (the MLflow `Tracker`): a training run, or an evaluation's
    parent run and the child runs nested in it.

    With `journal_dir` (training: `<model folder>/tracking`) every record goes through the
    journal and a background courier (src/tracking/delivery.py): training never waits for
    the server and nothing is lost while it is unreachable. Without it (evaluation) each
    call is delivered at once. `description` describes the experiment when it has none;
    `parent_run_id` nests the run under another (a sweep's trial under the sweep), `tags` are
    on it from its creation.
    """

    def __init__(self, experiment_name: str, run_name: str, tracking_uri: Optional[str] = None,
                 journal_dir: Optional[Path] = None, description: Optional[str] = None,
                 parent_run_id: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None) -> None:
        run_id, uri, experiment_id = start_run(experiment_name, run_name, tracking_uri, parent_run_id, tags)
        self._attach(run_id, uri, experiment_id)
        experiment = self.client.get_experiment(experiment_id)
        self._experiment_name = experiment.name
        if description and not experiment.tags.get(NOTE_TAG):
            set_experiment_tag_once(self.client, experiment_id, NOTE_TAG, description)
        if journal_dir is not None:
            self.courier = Courier(self.client, run_id, Journal.create(journal_dir, uri, run_id, experiment.name), uri)
        logger.info("MLflow run %s in experiment %r (%s)", self.run_id, self._experiment_name, self.tracking_uri)

    def _attach(self, run_id: str, tracking_uri: str, experiment_id: str) -> None:
        self.tracking_uri, self.run_id, self.experiment_id = tracking_uri, run_id, experiment_id
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.courier: Optional[Courier] = None
        self._now = Delivery(self.client, run_id, journal=None)
        self.metrics = MetricsBuffer(self._send)
        self.ended = False

    def _send(self, record: Mapping[str, Any]) -> None:
        """Through the courier (training), else delivered now; an error then is the caller's."""
        if self.courier is not None:
            self.courier.send(record)
        else:
            DELIVER[record["op"]](self._now, record)

    @property
    def experiment_name(self) -> str:
        return self._experiment_name

    @property
    def results(self) -> Dict[str, Any]:
        """What delivering produced so far (`registered_version`, `policy_model_uri`)."""
        return self.courier.results if self.courier is not None else self._now.results

    def child(self, run_name: str) -> "TrainingRun":
        """A run nested under this one (MLflow's parent tag); it must end before this one."""
        from mlflow.tracking.context.registry import resolve_tags

        run = self.client.create_run(self.experiment_id, tags=resolve_tags({PARENT_TAG: self.run_id}),
                                     run_name=run_name)
        child = object.__new__(TrainingRun)
        child._attach(run.info.run_id, self.tracking_uri, self.experiment_id)
        child._experiment_name = self._experiment_name
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
        """The values that ran (a launcher's other spelling of a key is kept: see delivery)."""
        self._send({"op": "params", "params": {key[:250]: str(value)[:PARAM_VALUE_LIMIT] for key, value in params.items()}})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._send({"op": "tags", "tags": {k: str(v)[:5000] for k, v in tags.items() if v is not None}})

    def log_config(self, resolved_config_file: Path, scenarios: Sequence[Mapping[str, Any]],
                   source_files: Mapping[str, str], out_dir: Path) -> None:
        """The resolved config (the model folder's own file), the scenario list and the source files."""
        config_dir = Path(out_dir) / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "scenarios.yaml").write_text(yaml.safe_dump({"scenarios": [dict(s) for s in scenarios]}, sort_keys=False))
        self.log_artifact(resolved_config_file, "config")
        self.log_artifact(config_dir / "scenarios.yaml", "config")
        for role, path in source_files.items():
            if path and Path(path).is_file():
                self.log_artifact(Path(path).resolve(), f"config/source/{role}")

    def log_datasets(self, datasets: Sequence[Mapping[str, Any]]) -> None:
        """Dataset inputs of the run (`src.tracking.datasets`): what it trained on, with digests."""
        if datasets:
            self._send({"op": "inputs", "datasets": [dict(d) for d in datasets]})

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        self._send({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_artifacts(self, folder: Path, artifact_path: Optional[str] = None) -> None:
        self.log_artifact(folder, artifact_path)

    def log_table(self, table: Any, artifact_file: str) -> None:
        """Evaluation only: delivered at once (a training run never logs tables)."""
        mlflow.log_table(table, artifact_file, run_id=self.run_id)

    def log_policy(self, model_zip: Path, registered_model_name: Optional[str],
                   version_tags: Optional[Mapping[str, str]] = None,
                   alias: Optional[str] = None, description: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]:
        """Log the final policy as a file and as a pyfunc model; register it as a new version
        with `version_tags`, and point `alias` at it when given (`log_policy_model`).

        Returns (registered version, model URI) when delivered now, else (None, None): the
        courier delivers it, and `results` holds both once it has.
        """
        self._send({"op": "policy", "model_zip": str(Path(model_zip).resolve()), "model_name": registered_model_name,
                    "version_tags": {k: str(v) for k, v in (version_tags or {}).items()}, "alias": alias,
                    "description": description})
        return self.results.get("registered_version"), self.results.get("policy_model_uri")

    def end(self, status: str = "FINISHED", patience_s: float = 0.0) -> bool:
        """Close the run with `status`. With a courier: wait for the journal to be delivered
        until `patience_s` seconds pass without a delivery, then leave the rest to
        `rl/sync.py`. True when everything reached the server."""
        if self.ended:
            return self.courier is None or self.courier.pending() == 0
        self.ended = True
        if self.courier is None:
            try:
                self.metrics.flush()
            except Exception:
                logger.exception("could not write the last metrics; the run ends FAILED")
                status = "FAILED"
                raise
            finally:
                self.client.set_terminated(self.run_id, status)
            return True
        self.metrics.flush()
        self._send({"op": "end", "status": status})
        delivered = self.courier.wait(patience_s)
        self.courier.stop()
        return delivered

    @property
    def unreachable_since(self) -> Optional[float]:
        return self.courier.unreachable_since if self.courier is not None else None

    def pending(self) -> int:
        return self.courier.pending() if self.courier is not None else 0
