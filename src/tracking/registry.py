"""Where a model comes from: a file, a `runs:/` URI or a `models:/` URI.

MLflow reads `models:/<name>` without a version as a model ID, so `/<version>`, `/latest`
and `@<alias>` are resolved here explicitly against the registry before downloading.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from src.tracking.store import ensure_store

logger = logging.getLogger(__name__)

#: File name of the policy inside a model folder, a run's artifacts and the pyfunc wrapper.
POLICY_FILE = "final_model.zip"


class ModelResolutionError(ValueError):
    """A model path or URI that cannot be turned into a policy file (one-line message)."""


@dataclass
class ResolvedModel:
    uri: str
    local_path: Path
    run_id: Optional[str] = None
    registered_name: Optional[str] = None
    version: Optional[str] = None


def _find_policy(folder: Path, uri: str) -> Path:
    if folder.is_file():
        return folder
    candidates = sorted(folder.rglob(POLICY_FILE)) or sorted(folder.rglob("*.zip"))
    if not candidates:
        raise ModelResolutionError(f"{uri}: no {POLICY_FILE} in the downloaded artifacts ({folder})")
    return candidates[0]


def resolve_model_uri(uri: str, tracking_uri: Optional[str] = None) -> ResolvedModel:
    """Turn a path, `runs:/<run_id>/<path>`, `models:/<name>/<version|latest>` or
    `models:/<name>@<alias>` into a local policy zip and the run it came from."""
    text = str(uri).strip()
    if not text.startswith(("runs:/", "models:/")):
        path = Path(text)
        if path.is_dir():
            path = _find_policy(path, text)
        elif not path.exists() and Path(f"{text}.zip").is_file():  # SB3 style: the name without .zip
            path = Path(f"{text}.zip")
        if not path.is_file():
            raise ModelResolutionError(f"--resume-from/--model-path: file {text!r} does not exist")
        return ResolvedModel(uri=text, local_path=path)

    import mlflow  # seconds to import: only for runs:/ and models:/ URIs, not for a plain file
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    store = ensure_store(tracking_uri)  # created under its lock if it is new
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    try:
        if text.startswith("runs:/"):
            m = re.fullmatch(r"runs:/([^/]+)/?(.*)", text)
            if not m:
                raise ModelResolutionError(f"{text}: expected runs:/<run_id>/<path>")
            run_id, artifact = m.group(1), m.group(2) or "model"
            client.get_run(run_id)  # a clear error for an unknown run before downloading
            local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact,
                                                             tracking_uri=client.tracking_uri))
            return ResolvedModel(uri=text, local_path=_find_policy(local, text), run_id=run_id)

        m = re.fullmatch(r"models:/([^/@]+)(?:/([^/]+)|@([^/]+))", text)
        if not m:
            raise ModelResolutionError(
                f"{text}: expected models:/<name>/<version>, models:/<name>/latest or models:/<name>@<alias>")
        name, version, alias = m.group(1), m.group(2), m.group(3)
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
        elif version == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise ModelResolutionError(f"{text}: registered model {name!r} has no versions")
            mv = max(versions, key=lambda v: int(v.version))
        else:
            if not version.isdigit():
                raise ModelResolutionError(f"{text}: version must be a number, 'latest' or use @alias")
            mv = client.get_model_version(name, version)
        # the policy zip as its run logged it (`model/`); the logged pyfunc model carries it
        # pickled inside (older versions as a file among the model's artifacts)
        found = None
        if mv.run_id and any(f.path == f"model/{POLICY_FILE}" for f in client.list_artifacts(mv.run_id, "model")):
            found = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=f"model/{POLICY_FILE}",
                                                             tracking_uri=store))
        if found is None:
            source = client.get_model_version_download_uri(name, mv.version)
            found = _find_policy(Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=store)), text)
        return ResolvedModel(uri=text, local_path=found, run_id=mv.run_id, registered_name=name, version=str(mv.version))
    except MlflowException as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelResolutionError(f"{text}: {first_line}") from None
