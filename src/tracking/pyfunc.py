"""The trained policy as an MLflow pyfunc model, so it can be registered and versioned.

The wrapper carries the SB3 zip as an artifact (`artifacts/final_model.zip`); `predict`
takes raw observation rows (as the training env produces them: one row per network for
network-wide policies, one row per junction for junction-shared `phase_select` policies) and
returns actions, for serving or quick checks. The observation normalisation statistics saved inside the zip are
applied first, frozen, exactly as `RLController` does.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np

from src.rl.normalization import ObservationNormalizer


class TrafficPolicyModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from stable_baselines3 import PPO  # torch: only where a policy is served

        self.policy = PPO.load(context.artifacts["policy"], device="cpu")
        self.normalize = ObservationNormalizer.from_model_zip(context.artifacts["policy"])

    def predict(self, context, model_input, params=None):
        obs = self.normalize(np.asarray(model_input, dtype=np.float32))
        actions, _ = self.policy.predict(obs, deterministic=True)
        return actions
