"""`PhaseSelectEnv`: `phase_select` control as a gymnasium env (the control of RESCO and sumo-rl).

Every `decision_interval` seconds each junction whose green has lasted `min_green` keeps it
or switches to another phase of its program; `PhaseActuator` (the same one the max-pressure
baseline uses) inserts the program's yellow/all-red on every switch. The action holds one
phase index per junction (`MultiDiscrete`); an index beyond a junction's own phases keeps its
green, and junctions not yet ready ignore theirs.

The observation is each junction's local view (`JunctionObserver`), shape (junctions, size),
or flattened to one vector for a network-wide policy (`flatten=True`). The reward is one
value per junction (`info["junction_rewards"]`, from `src.rl.reward.junction_rewards`); the
scalar reward is their mean, so `Monitor` and the episode reward read as usual. Under
parameter sharing `JunctionVecEnv` turns each junction into an entry of its own.

`reset` runs one decision interval in every junction's first green and observes it. The end
of the simulation is a time limit: `truncated`, never `terminated`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import gymnasium as gym
import numpy as np

from src.params import SimulationParams
from src.control import LaneInfo, PhaseActuator, plan_timing
from src.rl.environment import ScenarioEnv
from src.rl.junction_observation import JunctionObserver, phase_select_dimensions
from src.rl.reward import check_junction_reward, junction_rewards, resolve_reward_params

#: Seconds between lane readings for the delay reward within a decision interval.
REWARD_SAMPLE_S = 1.0


class PhaseSelectEnv(ScenarioEnv):
    """One scenario under `phase_select` control."""

    def __init__(
        self,
        env_params: Union[SimulationParams, str],
        network_path: Path,
        decision_interval: float = 5.0,
        reward_function: str = "delay",
        reward_params: Optional[Mapping[str, float]] = None,
        flatten: bool = False,
        network_dimensions: Optional[Mapping[str, int]] = None,
        work_dir: Optional[Path] = None,
        scenario_name: str = "scenario",
        phase_slots: Optional[int] = None,
        **route_options: Any,
    ) -> None:
        super().__init__(env_params, network_path, work_dir, scenario_name, **route_options)
        if decision_interval <= 0:
            raise ValueError(f"decision_interval {decision_interval!r} must be > 0 s")
        self.decision_interval = float(decision_interval)
        self.reward_function = reward_function
        self.reward_params = resolve_reward_params(reward_function, reward_params)
        check_junction_reward(reward_function)
        c = self.params.control
        self.timing = plan_timing(self.plans, c.cycle_length, c.yellow_time, c.min_green)
        self.phase_slots = phase_slots
        dims = phase_select_dimensions(self.plans, phase_slots)
        if network_dimensions is not None:
            for key in ("signals", "max_phases"):
                if key in network_dimensions and int(network_dimensions[key]) != dims[key]:
                    raise ValueError(f"env {scenario_name}: {key} {dims[key]} differs from the network's "
                                     f"{network_dimensions[key]}")
        self.flatten = bool(flatten)
        self.num_signals, self.max_phases = dims["signals"], dims["max_phases"]
        local = dims["junction_observation"]
        shape = (self.num_signals * local,) if self.flatten else (self.num_signals, local)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=shape, dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete([self.max_phases] * self.num_signals)
        self.observer: Optional[JunctionObserver] = None
        self.actuator: Optional[PhaseActuator] = None

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        sim = self._start_sim()
        if self.observer is None:  # lanes are fixed by the network: resolved once
            self.observer = JunctionObserver(self.plans, LaneInfo.from_plans(sim.api, self.plans), self.phase_slots)
        self.observer.forget_vehicles()
        self.actuator = PhaseActuator(self.plans, self.timing)
        self.actuator.start(sim.api, sim.time)
        self._pending = 0.0
        self._pending_by_junction = np.zeros(self.num_signals)
        self._episode_reward = 0.0
        obs, *_ = self._advance()  # warm-up: one interval in the first greens
        return obs, self.episode_info()

    def _advance(self):
        """Run one decision interval; per junction: observation, halting vehicle-seconds, queue,
        pressure and entry-backlog vehicle-seconds."""
        sim, api = self.sim, self.sim.api
        start = sim.time
        stop = min(start + self.decision_interval, self.end_time)
        halting_seconds = np.zeros(self.num_signals)
        while sim.time < stop - 1e-9:
            before = sim.time
            sim.step(min(before + REWARD_SAMPLE_S, stop))
            halting_seconds += self.observer.read_incoming_halting(api) * (sim.time - before)
        vehicles, halting = self.observer.read_lanes(api)
        pending_start = self._pending_by_junction
        self.observer.read_pending(api)
        self._pending_by_junction = self.observer.pending + self.observer.pending_elsewhere / max(self.num_signals, 1)
        self._pending = float(self.observer.pending.sum() + self.observer.pending_elsewhere)
        # each junction's own entry backlog (vehicle-seconds), trapezoid over the interval
        backlog_seconds = 0.5 * (pending_start + self._pending_by_junction) * (sim.time - start)
        obs = self.observer.observe(vehicles, halting, self.actuator, sim.time)
        queue = self.observer.incoming_total(halting)
        return (obs.ravel() if self.flatten else obs), halting_seconds, queue, self.observer.pressure(halting), backlog_seconds

    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        now = self.sim.time
        chosen = self.observer.phases_from_actions(np.asarray(action).reshape(-1), self.actuator.current)
        for tls in self.actuator.ready(now):
            self.actuator.switch(self.sim.api, tls, chosen[tls], now)
        obs, halting_seconds, queue, pressure, backlog_seconds = self._advance()
        rewards = junction_rewards(self.reward_function, self.reward_params, halting_seconds, queue, pressure,
                                   backlog_seconds)
        reward = float(rewards.mean())
        self._episode_reward += reward
        truncated = self.sim.time >= self.end_time - 1e-9
        info: Dict[str, Any] = {"scenario": self.scenario_name, "sim_time": self.sim.time,
                                "junction_rewards": rewards.astype(np.float32), "pending": self._pending,
                                "switches": self.actuator.switches}
        if truncated:
            info.update(self.episode_info())
            info["episode_metrics"] = self.finish_episode()
            info["episode_reward"] = self._episode_reward
        return obs, reward, False, truncated, info
