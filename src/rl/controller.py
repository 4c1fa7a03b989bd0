"""`RLController`: a trained policy as the `rl` controller of the simulation CLI.

It observes and acts exactly as `TrafficControlEnv` does (same `FeatureExtractor`, same
softmax over each junction's own phases, same actuator), with the feature lists and cycle
length read from the model file, so `--model-path` is the only flag it needs. Observations
are normalised with the statistics saved inside the model zip, frozen (no update). The first
cycle runs at the equal split, as the env's warm-up cycle does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from src.control.actuator import CycleTiming, proportions_to_durations
from src.control.base import CycleMeasurement, SignalController
from src.network.phases import PhasePlan
from src.rl.normalization import ObservationNormalizer
from src.rl.traffic_analysis import FeatureExtractor
from src.rl.utils import check_compatible, read_model_metadata

logger = logging.getLogger(__name__)


class RLController(SignalController):
    name = "rl"

    def __init__(
        self,
        plans: Mapping[str, PhasePlan],
        timing: CycleTiming,
        model_path: str,
        network_dir: Optional[Path] = None,
        deterministic: bool = True,
    ) -> None:
        from stable_baselines3 import PPO

        from src.tracking.registry import resolve_model_uri

        self.model_file = resolve_model_uri(str(model_path)).local_path
        metadata = read_model_metadata(self.model_file)
        cycle = (metadata.get("cycle_lengths") or [timing.cycle_length])[0]
        timing = CycleTiming(float(cycle), float(metadata.get("yellow_time", timing.yellow_time)),
                             float(metadata.get("min_green", timing.min_green)))
        super().__init__(plans, timing)
        self.extractor = FeatureExtractor(plans, metadata.get("features"))
        self.track_entered = self.extractor.needs_entered
        check_compatible(metadata, self.extractor.size, self.extractor.action_size, f"model {self.model_file}")
        self.model = PPO.load(str(self.model_file), device="cpu")
        if self.model.observation_space.shape != (self.extractor.size,):
            raise ValueError(
                f"model {self.model_file}: observation size {self.model.observation_space.shape} does not "
                f"match this network's {self.extractor.size}"
            )
        self.normalize = ObservationNormalizer.from_model_zip(self.model_file)
        self.deterministic = deterministic
        logger.info("rl controller: %s (cycle %.0f s, obs %d, action %d)", self.model_file, timing.cycle_length,
                    self.extractor.size, self.extractor.action_size)

    def reset(self) -> None:
        self.extractor.reset()

    def action_for(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action for a raw observation (normalised here with the frozen statistics)."""
        action, _ = self.model.predict(self.normalize(obs), deterministic=self.deterministic)
        return action

    def _durations(self, action: np.ndarray) -> Dict[str, np.ndarray]:
        proportions = self.extractor.action_to_proportions(action)
        return {tls: proportions_to_durations(p, self.timing) for tls, p in proportions.items()}

    @classmethod
    def run_options(cls, params: Any, network: Any) -> Dict[str, Any]:
        return {"model_path": params.control.model_path, "network_dir": network.directory}

    def initial_durations(self) -> Dict[str, np.ndarray]:
        """The first cycle runs at the equal split, like the env's warm-up cycle in `reset`."""
        return self._durations(np.zeros(self.extractor.action_size, dtype=np.float32))

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return self._durations(self.action_for(np.clip(self.extractor.observe(measurement), 0.0, 1.0)))

