"""Which MLflow store a run uses, created once even when many jobs start together.

`MLFLOW_TRACKING_URI` (a server on a cluster) wins; otherwise the laptop default is a
SQLite store in the repository root, so `mlflow ui` run there shows every run.
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import unquote, urlparse

from src.locations import LocationError, check_writable_dir, check_writable_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STORE_FILE = REPO_ROOT / "mlflow.db"


def default_tracking_uri() -> str:
    return f"sqlite:///{DEFAULT_STORE_FILE}"


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri[len("sqlite:///"):]).split("?", 1)[0])


def local_path(uri: str) -> Optional[Path]:
    """The folder of a local `file:` URI or plain path (None for remote stores)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock that holds across processes and SLURM jobs sharing a filesystem."""
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def check_store_location(uri: str) -> None:
    """A local store we cannot write is one line (LocationError) before anything starts."""
    db = sqlite_file(uri)
    if db is not None:
        check_writable_file(db, "the MLflow store")
        return
    folder = local_path(uri)
    if folder is not None:
        check_writable_dir(folder, "the MLflow store")


def ensure_store(uri: Optional[str] = None) -> str:
    """Create the store (schema migration) once, under a file lock, before anyone uses it.

    Several jobs opening a new SQLite store at once would each run MLflow's migration and
    leave it broken (`table _alembic_tmp_... already exists`); the lock serialises that.
    """
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    check_store_location(resolved)
    db = sqlite_file(resolved)
    if db is None:
        MlflowClient(tracking_uri=resolved).search_experiments(max_results=1)
        return resolved
    with _file_lock(db.with_name(db.name + ".lock")):
        MlflowClient(tracking_uri=resolved).search_experiments(max_results=1)
    return resolved


def new_experiment_artifact_location(uri: str, experiment_name: str) -> Optional[Path]:
    """Where a new experiment of a SQLite store keeps its artifacts: beside the database.

    MLflow's default (`./mlruns` of whichever process creates the experiment) would scatter a
    store's artifacts, and the models later batches resume from, over submit folders.
    """
    db = sqlite_file(uri)
    if db is None:
        return None
    return db.resolve().parent / "mlruns" / re.sub(r"[^A-Za-z0-9_.-]", "_", experiment_name)


#: MLflow 3's UI opens an experiment in its GenAI view (traces, judges) unless it is tagged as
#: model training (the UI's `CUSTOM_MODEL_DEVELOPMENT` kind).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def set_experiment_tag_once(client: Any, experiment_id: str, key: str, value: str) -> None:
    """Tag an experiment that lacked `key`. Jobs starting together (a job array, several
    trainings against one server) race to set it, and the server's SQLite refuses the second
    insert of the same key: that job finds the tag set and goes on."""
    from mlflow.exceptions import MlflowException

    try:
        client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        if key not in client.get_experiment(experiment_id).tags:
            raise


def ensure_experiment(uri: str, experiment_name: str) -> str:
    """The id of `experiment_name`, created (artifacts beside a SQLite store) if it is new, and
    tagged as model training unless it says otherwise."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        location = new_experiment_artifact_location(uri, experiment_name)
        try:
            client.create_experiment(experiment_name, artifact_location=str(location) if location else None,
                                     tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # created meanwhile by another job
            pass
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise MlflowException(f"experiment {experiment_name!r} could not be created")
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        set_experiment_tag_once(client, experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def check_artifact_location(uri: str, experiment_name: Optional[str]) -> None:
    """The artifact folder runs of `experiment_name` will write to must be writable (local stores)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name) if experiment_name else None
    if experiment is not None:
        folder = local_path(experiment.artifact_location)
    else:
        folder = new_experiment_artifact_location(uri, experiment_name or "Default")
    if folder is not None:
        check_writable_dir(folder, f"the MLflow artifact folder of experiment {experiment_name!r}", create=False)


__all__ = ["LocationError", "REPO_ROOT", "check_artifact_location", "check_store_location", "default_tracking_uri",
           "ensure_experiment", "ensure_store", "resolve_tracking_uri", "sqlite_file"]
