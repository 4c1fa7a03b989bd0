"""The seam between training/evaluation and a tracking backend.

Training and evaluation talk to a `Tracker`; `TrainingRun` (src/tracking/run.py) is the
MLflow one and `NullTracker` the one for `--no-mlflow`, so neither has `if tracking:`
branches nor calls a backend directly. A new backend (e.g. Weights & Biases) is one class
with these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple


class Tracker(Protocol):
    run_id: Optional[str]
    tracking_uri: Optional[str]

    @property
    def experiment_name(self) -> Optional[str]:
        """Where the run landed (under `mlflow run` the launcher may choose it)."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None: ...

    def output_formats(self) -> List[Any]:
        """SB3 logger outputs that send what SB3 records to this backend."""

    def log_config(self, resolved_config_file: Path, scenarios: Sequence[Mapping[str, Any]],
                   source_files: Mapping[str, str], out_dir: Path) -> None: ...

    def log_datasets(self, datasets: Sequence[Mapping[str, Any]]) -> None:
        """What the run trained on (`src/tracking/datasets.py` records)."""

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...

    def log_artifacts(self, folder: Path, artifact_path: Optional[str] = None) -> None: ...

    def log_table(self, table: Any, artifact_file: str) -> None:
        """A pandas frame as a table the backend's UI can show (the evaluation table)."""

    def child(self, run_name: str) -> "Tracker":
        """A run nested under this one (one per controller in an evaluation); end it first."""

    def find_run(self, tags: Mapping[str, str]) -> Optional[str]:
        """The id of a run of this store carrying `tags` (a model's training run), or None."""

    def log_policy(self, model_zip: Path, registered_model_name: Optional[str],
                   version_tags: Optional[Mapping[str, str]] = None,
                   alias: Optional[str] = None, description: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]:
        """(version, model URI) when registered now, else (None, None) and later in `results`."""

    @property
    def results(self) -> Dict[str, Any]:
        """What delivery produced: `registered_version`, `policy_model_uri`."""

    def pending(self) -> int:
        """Records not delivered yet (a backend that can be unreachable keeps them)."""

    def end(self, status: str = "FINISHED", patience_s: float = 0.0) -> bool:
        """End the run; True when every record reached the backend (waiting up to `patience_s`
        seconds without progress for one that is unreachable)."""


class NullTracker:
    """Tracks nothing (`--no-mlflow`); every call is accepted and dropped."""

    run_id: Optional[str] = None
    tracking_uri: Optional[str] = None
    experiment_name: Optional[str] = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def output_formats(self) -> List[Any]:
        return []

    def log_config(self, resolved_config_file: Path, scenarios: Sequence[Mapping[str, Any]],
                   source_files: Mapping[str, str], out_dir: Path) -> None:
        pass

    def log_datasets(self, datasets: Sequence[Mapping[str, Any]]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def log_artifacts(self, folder: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def log_table(self, table: Any, artifact_file: str) -> None:
        pass

    def child(self, run_name: str) -> "NullTracker":
        return self

    def find_run(self, tags: Mapping[str, str]) -> Optional[str]:
        return None

    def log_policy(self, model_zip: Path, registered_model_name: Optional[str],
                   version_tags: Optional[Mapping[str, str]] = None,
                   alias: Optional[str] = None, description: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]:
        return None, None

    @property
    def results(self) -> Dict[str, Any]:
        return {}

    def pending(self) -> int:
        return 0

    def end(self, status: str = "FINISHED", patience_s: float = 0.0) -> bool:
        return True
