"""Which MLflow store a run uses.

`MLFLOW_TRACKING_URI` (a server on a cluster) wins; otherwise the laptop default is a
SQLite store in the repository root, so `mlflow ui` run there shows every run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STORE_FILE = REPO_ROOT / "mlflow.db"


def default_tracking_uri() -> str:
    return f"sqlite:///{DEFAULT_STORE_FILE}"


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def ensure_store(uri: Optional[str] = None) -> str:
    """Create the store (schema migration) once, before parallel jobs open it."""
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    MlflowClient(tracking_uri=resolved).search_experiments(max_results=1)
    return resolved
