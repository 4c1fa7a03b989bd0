"""The trained policy as an MLflow pyfunc model, so it can be registered and versioned.

The wrapper carries the SB3 zip as an artifact (`artifacts/final_model.zip`); `predict`
takes observation rows and returns actions, for serving or quick checks.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class TrafficPolicyModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from stable_baselines3 import PPO

        self.policy = PPO.load(context.artifacts["policy"], device="cpu")

    def predict(self, context, model_input, params=None):
        obs = np.asarray(model_input, dtype=np.float32)
        actions, _ = self.policy.predict(obs, deterministic=True)
        return actions
