"""`TrafficControlEnv`: a gymnasium env over one SUMO simulation of one scenario.

One step is one signal cycle. The action holds, for every signalised junction, one value
per phase (width = the most phases any junction has); each junction's values over its own
phases go through a softmax into shares of the cycle and then through the shared actuator
into green durations. The observation is the named features of `traffic_analysis`.
Spaces depend only on the network, so every scenario on one network shares them.

`reset` runs one warm-up cycle at the equal split (what an untrained policy does, and what
`RLController` runs first) and returns its observation: an all-zero observation would read
as an empty or jammed network. The end of the simulation is a time limit, reported as
`truncated` (never `terminated`), so PPO bootstraps the value of the state it stops in
instead of learning that the return falls to zero there.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import gymnasium as gym
import numpy as np

from src.argv import parse_simulation_params
from src.params import SimulationParams
from src.control import CycleTiming, LaneInfo, LaneSampler, SignalActuator, plan_timing, run_cycle
from src.control.base import DEFAULT_SAMPLE_INTERVAL_S
from src.metrics import compute_trip_metrics
from src.network.artifacts import NetworkArtifacts
from src.network.phases import read_phase_plans
from src.rl.constants import CYCLE_STRATEGIES
from src.rl.reward import compute_reward, resolve_reward_params
from src.rl.traffic_analysis import ACTION_BOUND, FeatureExtractor, cycle_from_action
from src.sumo_integration.simulation import SumoSimulation
from src.sumo_integration.sumocfg import option_args
from src.traffic import generate_traffic
from src.traffic.route_file import read_planned_departures
from src.traffic.route_files import route_file_for_episode

logger = logging.getLogger(__name__)



def network_dimensions(network_path: Path, features: Optional[Mapping[str, Sequence[str]]] = None,
                       cycle_action: bool = False) -> Dict[str, int]:
    """Sizes every env of a network shares: signals, phases, edges, observation, action
    (`cycle_action`: one more action value, the cycle length)."""
    extractor = FeatureExtractor(read_phase_plans(NetworkArtifacts.load(network_path).net_file), features)
    return {
        "signals": len(extractor.tls_ids),
        "max_phases": extractor.max_phases,
        "edges": len(extractor.edge_ids),
        "observation": extractor.size,
        "action": extractor.action_size + int(bool(cycle_action)),
    }


class ScenarioEnv(gym.Env):
    """The SUMO side of one scenario's env (its `SimulationParams`, or a replay string): its routes, one simulation per episode, the
    episode's trip metrics. Subclasses say what an action is (`TrafficControlEnv`: one cycle's
    green splits; `PhaseSelectEnv`: the green each junction holds next)."""

    metadata = {"render_modes": []}

    def __init__(self, env_params: Union[SimulationParams, str], network_path: Path, work_dir: Optional[Path] = None,
                 scenario_name: str = "scenario", route_files: Optional[Sequence[str]] = None,
                 route_order: str = "sequential", route_seed: int = 0) -> None:
        super().__init__()
        # Training hands each env its scenario's typed params (checked once, when the config was
        # loaded); a replay string (tests, debugging) is parsed here.
        self.params = env_params if isinstance(env_params, SimulationParams) else parse_simulation_params(env_params)
        self.scenario_name = scenario_name
        self.network = NetworkArtifacts.load(Path(network_path))
        self.plans = read_phase_plans(self.network.net_file)
        self._owns_work_dir = work_dir is None  # a temporary folder is removed again by close()
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix=f"env_{scenario_name}_"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        #: Recorded demand rotated per episode (a route-file scenario), else None: generated traffic.
        self.route_files = [Path(f) for f in route_files] if route_files else None
        self.route_order, self.route_seed = route_order, int(route_seed)
        if self.route_files:
            self.route_file = self.route_files[0]
            self._planned = read_planned_departures(self.route_file)
        else:
            self.route_file = self.work_dir / "routes.rou.xml"
            self.traffic_summary = generate_traffic(self.params.traffic, self.network, self.route_file)
            self._planned = self.traffic_summary.departures
        #: Every episode runs from `begin` to `end_time` (simulation seconds).
        self.begin = float(self.params.traffic.begin)
        self.end_time = float(self.params.traffic.end_time)
        self.sim: Optional[SumoSimulation] = None
        self.episode = 0

    def _start_sim(self) -> SumoSimulation:
        """A new SUMO run of this scenario (SUMO seed advances per episode; a route-file
        scenario takes the episode's file of its rotation)."""
        self._close_sim()
        if self.route_files:
            self.route_file = route_file_for_episode(self.route_files, self.episode, self.route_order, self.route_seed)
            self._planned = read_planned_departures(self.route_file)
        self.sim = SumoSimulation(
            self.network.net_file,
            [self.route_file],
            self.work_dir / "episode",
            self.end_time,
            step_length=self.params.network.step_length,
            seed=self.params.sumo_seed + self.episode,
            additional_files=self.params.additional_files,
            extra_args=option_args(self.params.sumo_options),  # a study's run options (--sumocfg)
            begin=self.begin,
        ).start()
        self.episode += 1
        return self.sim

    def episode_info(self) -> Dict[str, Any]:
        """What identifies the running episode (reset and final-step infos)."""
        info: Dict[str, Any] = {"scenario": self.scenario_name}
        if self.route_files:
            info["route_file"] = self.route_file.name
        return info

    def _pending_vehicles(self) -> float:
        """Vehicles due to depart that SUMO could not insert yet (the network's entry backlog)."""
        return float(len(self.sim.api.simulation.getPendingVehicles()))

    @property
    def sumo_backend(self) -> Optional[str]:
        """"libsumo" or "traci" for the running episode (None between episodes): a second env in
        one process runs on TraCI, which reads the lanes several times slower."""
        return self.sim.backend if self.sim is not None else None

    @property
    def last_episode_dir(self) -> Path:
        """SUMO outputs of the last finished episode (the running one writes to `episode/`)."""
        return self.work_dir / "last_episode"

    def finish_episode(self) -> Dict[str, float]:
        """Close SUMO, keep its outputs as `last_episode/`, compute the episode's trip metrics."""
        sim = self.sim
        self._close_sim()
        if self.last_episode_dir.exists():
            shutil.rmtree(self.last_episode_dir)
        sim.output_dir.rename(self.last_episode_dir)
        return compute_trip_metrics(self.last_episode_dir / sim.tripinfo_file.name, self._planned, self.end_time,
                                    self.last_episode_dir / sim.statistics_file.name, self.begin)

    def _close_sim(self) -> None:
        if self.sim is not None:
            self.sim.close()
            self.sim = None

    def close(self) -> None:
        self._close_sim()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        super().close()


class TrafficControlEnv(ScenarioEnv):
    """`cycle_splits` control: one step is one cycle of green shares for every junction."""

    def __init__(
        self,
        env_params: Union[SimulationParams, str],
        network_path: Path,
        cycle_lengths: Optional[Sequence[int]] = None,
        cycle_strategy: str = "fixed",
        features: Optional[Mapping[str, Sequence[str]]] = None,
        reward_function: str = "empirical",
        reward_params: Optional[Mapping[str, float]] = None,
        network_dimensions: Optional[Mapping[str, int]] = None,
        work_dir: Optional[Path] = None,
        scenario_name: str = "scenario",
        sample_interval: float = DEFAULT_SAMPLE_INTERVAL_S,
        cycle_action: bool = False,
        **route_options: Any,
    ) -> None:
        super().__init__(env_params, network_path, work_dir, scenario_name, **route_options)
        self.sample_interval = float(sample_interval)
        control = self.params.control
        self.cycle_lengths = [int(c) for c in (cycle_lengths or [control.cycle_length_or_default])]
        if cycle_strategy not in CYCLE_STRATEGIES:
            raise ValueError(f"cycle_strategy {cycle_strategy!r}; allowed: {', '.join(CYCLE_STRATEGIES)}")
        self.cycle_strategy = cycle_strategy
        self.reward_function = reward_function
        self.reward_params = resolve_reward_params(reward_function, reward_params)
        self.extractor = FeatureExtractor(self.plans, features)
        #: The last action value picks each cycle's length among `cycle_lengths`.
        self.cycle_action = bool(cycle_action)
        action_size = self.extractor.action_size + int(self.cycle_action)
        if network_dimensions is not None:
            actual = {"observation": self.extractor.size, "action": action_size}
            for key, value in actual.items():
                if key in network_dimensions and int(network_dimensions[key]) != value:
                    raise ValueError(f"env {scenario_name}: {key} size {value} differs from the network's {network_dimensions[key]}")
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.extractor.size,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(action_size,), dtype=np.float32)
        self.last_measurement = None
        self._durations: Dict[str, np.ndarray] = {}
        self._np_random_cycle = np.random.default_rng(self.params.sumo_seed)
        self.timing = self._timing_for(self.cycle_lengths[0])

    def _timing_for(self, cycle_length: int) -> CycleTiming:
        c = self.params.control
        return plan_timing(self.plans, cycle_length, c.yellow_time, c.min_green)

    def _pick_cycle_length(self) -> int:
        if self.cycle_strategy == "random":
            return int(self._np_random_cycle.choice(self.cycle_lengths))
        if self.cycle_strategy == "sequential":
            return self.cycle_lengths[self.episode % len(self.cycle_lengths)]
        return self.cycle_lengths[0]

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        if seed is not None:
            self._np_random_cycle = np.random.default_rng(seed)
        self.timing = self._timing_for(self._pick_cycle_length())
        self._start_sim()
        self.actuator = SignalActuator(self.plans, self.timing)
        self.sampler = LaneSampler(self.sim.api, LaneInfo.from_plans(self.sim.api, self.plans),
                                   track_entered=self.extractor.needs_entered)
        self.extractor.reset()
        self._episode_reward = 0.0
        self._pending = 0.0
        obs, _ = self._run_cycle(np.zeros(self.action_space.shape, dtype=np.float32))  # warm-up at the equal split
        return obs, {**self.episode_info(), "cycle_length": self.timing.cycle_length}

    def _run_cycle(self, action) -> tuple:
        """Apply `action` for one cycle; the cycle's observation and its mean entry backlog."""
        if self.cycle_action:
            self.timing = self._timing_for(cycle_from_action(action[-1], self.cycle_lengths))
            self.actuator.timing = self.timing
            action = action[:-1]
        proportions = self.extractor.action_to_proportions(action)
        self._durations = self.actuator.durations_from_proportions(proportions)
        self.actuator.apply(self.sim.api, self._durations)
        m = run_cycle(self.sim.api, self.sampler, self.timing.cycle_length, self.sample_interval, self._durations, self.end_time)
        self.last_measurement = m
        pending_start, self._pending = self._pending, self._pending_vehicles()
        return np.clip(self.extractor.observe(m), 0.0, 1.0), 0.5 * (pending_start + self._pending)

    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        obs, backlog = self._run_cycle(action)
        m = self.last_measurement
        reward = compute_reward(self.reward_function, self.reward_params, m, self.extractor.last_junction_view, backlog)
        self._episode_reward += reward
        truncated = m.time >= self.end_time - 1e-9  # the time limit: no terminal state of the traffic
        info: Dict[str, Any] = {"scenario": self.scenario_name, "sim_time": m.time, "arrived": m.arrived,
                                "pending": self._pending}
        if truncated:
            info.update(self.episode_info())
            info["episode_metrics"] = self.finish_episode()
            info["episode_reward"] = self._episode_reward
        return obs, float(reward), False, truncated, info
