"""`RLController`: a trained policy as the `rl` controller of the simulation CLI.

It observes and acts exactly as its training env did, with everything read from the model
file, so `--model-path` is the only flag it needs:
- `cycle_splits` models (`TrafficControlEnv`): same `FeatureExtractor`, same softmax over each
  junction's own phases, same cycle actuator; the first cycle runs at the equal split, as the
  env's warm-up cycle does;
- `phase_select` models (`PhaseSelectEnv`): the runner's `PhaseActuator` at the model's
  decision interval and minimum green, the same `JunctionObserver`; one prediction per
  junction (junction sharing) or one for the network.
Observations are normalised with the statistics saved inside the model zip, frozen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from src.control.actuator import CycleTiming, plan_timing, proportions_to_durations
from src.control.base import CycleMeasurement, LaneInfo, SignalController
from src.network.phases import PhasePlan
from src.rl.junction_observation import JunctionObserver
from src.rl.normalization import ObservationNormalizer
from src.rl.junction_observation import phase_select_dimensions
from src.rl.traffic_analysis import FeatureExtractor, cycle_from_action
from src.rl.utils import check_compatible, control_of, read_model_metadata

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
        # the env's timing rule (kept programs bring their own transitions)
        timing = plan_timing(plans, float(cycle), float(metadata.get("yellow_time", timing.yellow_time)),
                             float(metadata.get("min_green", timing.min_green)))
        super().__init__(plans, timing)
        control = control_of(metadata)
        self.mode = "cycle" if control["control_mode"] == "cycle_splits" else "phase_select"
        self.sharing = control["policy_sharing"]
        self.phase_slots: Optional[int] = None
        self.decision_interval = float(metadata.get("decision_interval") or 5)
        self.extractor = FeatureExtractor(plans, metadata.get("features"))
        self.track_entered = self.extractor.needs_entered
        self.cycle_action = bool(metadata.get("cycle_action", False))
        self.cycle_lengths = [int(c) for c in metadata.get("cycle_lengths") or [timing.cycle_length]]
        if self.mode == "cycle":
            observation_size, action_size = self.extractor.size, self.extractor.action_size + int(self.cycle_action)
        else:
            junction = self.sharing == "junction"
            # a junction-shared policy runs on any network whose junctions fit its phase slots
            self.phase_slots = int(metadata.get("phase_slots") or metadata.get("max_phases")) if junction else None
            dims = phase_select_dimensions(plans, self.phase_slots)
            observation_size = dims["junction_observation"] if junction else dims["observation"]
            action_size = dims["max_phases"] if junction else dims["action"]
        check_compatible(metadata, observation_size, action_size, f"model {self.model_file}",
                         phase_counts={tls: p.num_phases for tls, p in plans.items()})
        self.model = PPO.load(str(self.model_file), device="cpu")
        if self.model.observation_space.shape != (observation_size,):
            raise ValueError(
                f"model {self.model_file}: observation size {self.model.observation_space.shape} does not "
                f"match this network's {observation_size}"
            )
        self.normalize = ObservationNormalizer.from_model_zip(self.model_file)
        self.deterministic = deterministic
        self.observer: Optional[JunctionObserver] = None
        logger.info("rl controller: %s (%s, %s policy, obs %d, action %d)", self.model_file,
                    f"cycle {timing.cycle_length:.0f} s" if self.mode == "cycle" else
                    f"phase_select every {self.decision_interval:g} s", self.sharing, observation_size, action_size)

    def reset(self) -> None:
        self.extractor.reset()

    def action_for(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action for a raw observation (normalised here with the frozen statistics)."""
        action, _ = self.model.predict(self.normalize(obs), deterministic=self.deterministic)
        return action

    def _durations(self, action: np.ndarray) -> Dict[str, np.ndarray]:
        if self.cycle_action:  # the last value is this cycle's length, as in training
            self.timing = plan_timing(self.plans, cycle_from_action(action[-1], self.cycle_lengths),
                                      self.timing.yellow_time, self.timing.min_green)
            action = action[:-1]
        proportions = self.extractor.action_to_proportions(action)
        return {tls: proportions_to_durations(p, self.timing) for tls, p in proportions.items()}

    @classmethod
    def run_options(cls, params: Any, network: Any) -> Dict[str, Any]:
        return {"model_path": params.control.model_path, "network_dir": network.directory}

    def initial_durations(self) -> Dict[str, np.ndarray]:
        """The first cycle runs at the equal split, like the env's warm-up cycle in `reset`."""
        return self._durations(np.zeros(self.extractor.action_size + int(self.cycle_action), dtype=np.float32))

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return self._durations(self.action_for(np.clip(self.extractor.observe(measurement), 0.0, 1.0)))

    # --- phase_select ---------------------------------------------------------------------

    def bind(self, api: Any, actuator: Any, lanes: LaneInfo) -> None:
        """The runner's simulation and actuator (phase_select): observed as the env observes them."""
        self.api, self.actuator = api, actuator
        self.observer = JunctionObserver(self.plans, LaneInfo.from_plans(api, self.plans), self.phase_slots)

    def select(self, queues: np.ndarray, lanes: LaneInfo, current: Mapping[str, int],
               ready: Sequence[str]) -> Dict[str, int]:
        now = float(self.api.simulation.getTime())
        vehicles, halting = self.observer.read_lanes(self.api)
        self.observer.read_pending(self.api)
        obs = self.observer.observe(vehicles, halting, self.actuator, now)
        batch = obs if self.sharing == "junction" else obs.reshape(1, -1)
        actions = np.asarray(self.action_for(batch)).reshape(-1)
        chosen = self.observer.phases_from_actions(actions, current)
        return {tls: chosen[tls] for tls in ready}
