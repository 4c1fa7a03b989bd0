"""The trained policy as an MLflow pyfunc model, so it can be registered and versioned.

The wrapper carries the SB3 zip as an artifact (`artifacts/final_model.zip`); `predict`
takes raw observation rows (as the training env produces them: one row per network for
network-wide policies, one row per junction for junction-shared `phase_select` policies) and
returns actions, for serving or quick checks. The observation normalisation statistics saved inside the zip are
applied first, frozen, exactly as `RLController` does. The model's signature (tensor shapes
and types of observations and actions) is read from the policy itself (`policy_signature`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple

import mlflow.pyfunc
import numpy as np

from src.rl.normalization import ObservationNormalizer


class TrafficPolicyModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from stable_baselines3 import PPO  # torch: only where a policy is served

        self.policy = PPO.load(context.artifacts["policy"], device="cpu")
        self.normalize = ObservationNormalizer.from_model_zip(context.artifacts["policy"])

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
