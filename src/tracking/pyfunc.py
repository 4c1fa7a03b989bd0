"""The trained policy as an MLflow pyfunc model, so it can be registered and versioned.

The wrapper carries the SB3 zip inside itself (its bytes are pickled with the model object), so the
logged model holds no `artifacts/` folder of its own (MLflow 3 already roots a logged model's files
at `artifacts/`: a pyfunc artifact would sit at `artifacts/artifacts/final_model.zip`); `predict`
takes raw observation rows (as the training env produces them: one row per network for
network-wide policies, one row per junction for junction-shared `phase_select` policies) and
returns actions, for serving or quick checks. The observation normalisation statistics saved inside the zip are
applied first, frozen, exactly as `RLController` does. The model's signature (tensor shapes
and types of observations and actions) is read from the policy itself (`policy_signature`).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import mlflow.pyfunc
import numpy as np

from src.rl.normalization import NORMALIZATION_NAME, ObservationNormalizer, read_normalization


class TrafficPolicyModel(mlflow.pyfunc.PythonModel):
    def __init__(self, model_zip: Optional[Path] = None) -> None:
        self.policy_zip = Path(model_zip).read_bytes() if model_zip is not None else None

    def load_context(self, context) -> None:
        from stable_baselines3 import PPO  # torch: only where a policy is served

        embedded = getattr(self, "policy_zip", None)
        # models logged before the zip was embedded carry it as the pyfunc artifact "policy"
        source = (lambda: io.BytesIO(embedded)) if embedded is not None else (lambda: context.artifacts["policy"])
        self.policy = PPO.load(source(), device="cpu")
        self.normalize = ObservationNormalizer.from_model_zip(source())

    def predict(self, context, model_input: np.ndarray, params: Optional[dict[str, Any]] = None) -> np.ndarray:
        obs = self.normalize(np.asarray(model_input, dtype=np.float32))
        actions, _ = self.policy.predict(obs, deterministic=True)
        return actions


def policy_signature(model_zip: Path) -> Tuple[Any, np.ndarray]:
    """Observation rows in, actions out, as the policy's own spaces shape them; and an input
    example (two rows of zeros)."""
    from mlflow.models import infer_signature
    from stable_baselines3 import PPO

    policy = PPO.load(str(model_zip), device="cpu")
    obs = np.zeros((2, *policy.observation_space.shape), dtype=np.float32)
    actions, _ = policy.predict(obs, deterministic=True)
    return infer_signature(obs, np.asarray(actions)), obs


def log_policy_model(client: Any, run_id: str, model_zip: Path, registered_model_name: Optional[str],
                     version_tags: Mapping[str, str], alias: Optional[str],
                     description: Optional[str] = None) -> Tuple[Optional[str], str]:
    """The policy zip (`model/final_model.zip`, with its normalisation statistics beside it),
    the pyfunc model `policy` (typed, with the policy's signature), its registered version
    with `version_tags`, `alias` and `description`, and the run tags that point to them.
    Returns (registered version or None, model URI)."""
    from mlflow.entities import RunTag
    from mlflow.models import Model

    client.log_artifact(run_id, str(model_zip), "model")
    state = read_normalization(model_zip)
    if state is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / NORMALIZATION_NAME
            path.write_text(json.dumps(state, indent=1))
            client.log_artifact(run_id, str(path), "model")
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    # MLflow 3 files the logged model under the active experiment, not the run's: without this
    # it lands in experiment 0 (absent from a new file store; under SQLite, `./mlruns` of the cwd)
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(client._registry_uri)
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    try:
        signature, example = policy_signature(model_zip)
        info = Model.log(artifact_path=None, name="policy", flavor=mlflow.pyfunc, run_id=run_id,
                         python_model=TrafficPolicyModel(model_zip),
                         signature=signature, input_example=example, registered_model_name=registered_model_name,
                         pip_requirements=["stable-baselines3", "torch", "numpy"])
    finally:
        pyfunc_logger.setLevel(level)
    version = getattr(info, "registered_model_version", None)
    if version is not None and registered_model_name:
        for key, value in version_tags.items():
            client.set_model_version_tag(registered_model_name, str(version), key, str(value))
        if alias:
            client.set_registered_model_alias(registered_model_name, alias, str(version))
        if description:
            client.update_model_version(registered_model_name, str(version), description=description)
            if not client.get_registered_model(registered_model_name).description:
                client.update_registered_model(registered_model_name, description=description)
    version = str(version) if version is not None else None
    tags = {"registered_model": registered_model_name, "registered_version": version, "policy_model_uri": info.model_uri}
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])
    return version, info.model_uri
