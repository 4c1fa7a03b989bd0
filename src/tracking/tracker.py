"""The seam between training/evaluation and a tracking backend.

Training talks to a `Tracker`; `TrainingRun` (src/tracking/run.py) is the MLflow one and
`NullTracker` the one for `--no-mlflow`, so the pipeline has no `if tracking:` branches. A new
backend (e.g. Weights & Biases) is one class with these methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional, Protocol, Sequence, Tuple


class Tracker(Protocol):
    run_id: Optional[str]
    tracking_uri: Optional[str]

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None: ...

    def output_formats(self) -> List[Any]:
        """SB3 logger outputs that send what SB3 records to this backend."""

    def log_config(self, resolved_config_file: Path, scenarios: Sequence[Mapping[str, Any]],
                   source_files: Mapping[str, str], out_dir: Path) -> None: ...

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...

    def log_artifacts(self, folder: Path, artifact_path: Optional[str] = None) -> None: ...

    def log_policy(self, model_zip: Path, registered_model_name: Optional[str],
                   version_tags: Optional[Mapping[str, str]] = None,
                   alias: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]: ...

    def end(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracks nothing (`--no-mlflow`); every call is accepted and dropped."""

    run_id: Optional[str] = None
    tracking_uri: Optional[str] = None

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

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def log_artifacts(self, folder: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def log_policy(self, model_zip: Path, registered_model_name: Optional[str],
                   version_tags: Optional[Mapping[str, str]] = None,
                   alias: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]:
        return None, None

    def end(self, status: str = "FINISHED") -> None:
        pass
