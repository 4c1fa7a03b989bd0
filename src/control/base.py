"""The cycle-based controller interface and what a controller observes.

Every `cycle_length` seconds a controller receives a `CycleMeasurement` (what the lane
sensors of the signalised junctions saw during the cycle that ended) and returns the green
durations of every phase of every junction for the next cycle. Lanes are read every
`sample_interval` seconds, a few hundred values at a time, never every lane every second.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from src.control.actuator import CycleTiming, program_durations
from src.network.phases import PhasePlan
from src.params import KEEP_PROGRAMS, resolved_signal_programs
from src.sumo_integration.simulation import lane_getter

DEFAULT_SAMPLE_INTERVAL_S = 5

logger = logging.getLogger(__name__)


@dataclass
class LaneInfo:
    """Static facts of the lanes the signals see: incoming and outgoing lanes of every link."""

    lane_ids: List[str]
    lengths: np.ndarray
    speed_limits: np.ndarray
    index: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_plans(cls, api, plans: Mapping[str, PhasePlan], extra_lanes: Sequence[str] = ()) -> "LaneInfo":
        """The lanes of the signals' links, plus `extra_lanes` a controller asked to observe."""
        lanes = sorted({lane for p in plans.values() for i, o, _ in p.links for lane in (i, o)} | set(extra_lanes))
        lengths = np.array([api.lane.getLength(l) for l in lanes], dtype=float)
        speeds = np.array([api.lane.getMaxSpeed(l) for l in lanes], dtype=float)
        return cls(lanes, lengths, speeds, {l: k for k, l in enumerate(lanes)})


@dataclass
class CycleMeasurement:
    """What the lane sensors saw over one cycle. Arrays are indexed like `lanes.lane_ids`."""

    time: float
    cycle_length: float
    lanes: LaneInfo
    mean_vehicles: np.ndarray
    mean_halting: np.ndarray
    mean_speed: np.ndarray
    last_vehicles: np.ndarray
    last_halting: np.ndarray
    entered: np.ndarray
    arrived: int
    running: int
    last_durations: Dict[str, np.ndarray]


class LaneSampler:
    """Accumulates lane readings over one cycle.

    `track_entered` also counts vehicles newly seen on each lane (the `inflow` feature);
    it reads vehicle ID lists instead of counts, so it is only done when asked for.
    """

    def __init__(self, api, lanes: LaneInfo, track_entered: bool = False) -> None:
        self.api = api
        self.lanes = lanes
        self.track_entered = track_entered
        n = len(lanes.lane_ids)
        self._prev_ids: List[set] = [set() for _ in range(n)]
        self.reset()

    def reset(self) -> None:
        n = len(self.lanes.lane_ids)
        self.samples = 0
        self.sum_vehicles = np.zeros(n)
        self.sum_halting = np.zeros(n)
        self.sum_speed = np.zeros(n)
        self.last_vehicles = np.zeros(n)
        self.last_halting = np.zeros(n)
        self.entered = np.zeros(n)

    def sample(self) -> None:
        ids, count = self.lanes.lane_ids, len(self.lanes.lane_ids)
        if self.track_entered:
            vehicles = np.fromiter(map(self._count_entered, range(count)), dtype=float, count=count)
        else:
            vehicles = np.fromiter(map(lane_getter(self.api, "getLastStepVehicleNumber"), ids), dtype=float, count=count)
        halting = np.fromiter(map(lane_getter(self.api, "getLastStepHaltingNumber"), ids), dtype=float, count=count)
        speed = np.fromiter(map(lane_getter(self.api, "getLastStepMeanSpeed"), ids), dtype=float, count=count)
        speed = np.where(vehicles > 0, speed, self.lanes.speed_limits)  # an empty lane runs at its limit
        self.sum_vehicles += vehicles
        self.sum_halting += halting
        self.sum_speed += speed
        self.last_vehicles = vehicles
        self.last_halting = halting
        self.samples += 1

    def _count_entered(self, k: int) -> int:
        """Vehicles on lane k now, counting those not seen there at the last sample as entered."""
        ids = set(self.api.lane.getLastStepVehicleIDs(self.lanes.lane_ids[k]))
        self.entered[k] += len(ids - self._prev_ids[k])
        self._prev_ids[k] = ids
        return len(ids)

    def means(self):
        s = max(self.samples, 1)
        return self.sum_vehicles / s, self.sum_halting / s, self.sum_speed / s


def run_cycle(
    api,
    sampler: LaneSampler,
    cycle_length: float,
    sample_interval: float,
    last_durations: Dict[str, np.ndarray],
    end_time: float,
) -> CycleMeasurement:
    """Step one cycle second by second, counting arrivals and sampling lanes."""
    sim = api.simulation
    sampler.reset()
    start = sim.getTime()
    stop = min(start + cycle_length, end_time)
    arrived = 0
    now = start
    next_sample = start + sample_interval
    while now < stop - 1e-9:
        api.simulationStep()
        now = sim.getTime()
        arrived += sim.getArrivedNumber()
        if now >= next_sample - 1e-9:
            sampler.sample()
            next_sample += sample_interval
    if sampler.samples == 0:
        sampler.sample()
    mean_veh, mean_halt, mean_speed = sampler.means()
    return CycleMeasurement(
        time=now,
        cycle_length=cycle_length,
        lanes=sampler.lanes,
        mean_vehicles=mean_veh,
        mean_halting=mean_halt,
        mean_speed=mean_speed,
        last_vehicles=sampler.last_vehicles.copy(),
        last_halting=sampler.last_halting.copy(),
        entered=sampler.entered.copy(),
        arrived=arrived,
        running=sim.getMinExpectedNumber(),
        last_durations=dict(last_durations),
    )


class SignalController(ABC):
    """A signal control method behind the cycle interface.

    `adaptive` is False for controllers that never change the programs during the run
    (fixed time, SUMO's actuated logic): the runner then steps SUMO without reading
    anything, as fast as a plain `sumo` run.
    """

    name: str = "base"
    adaptive: bool = True
    #: "cycle": green splits once per cycle (`SignalActuator`); "phase_select": see `PhaseSelectController`.
    mode: str = "cycle"
    #: Whether decisions need `CycleMeasurement.entered` (see `LaneSampler`).
    track_entered: bool = False
    #: Seconds between lane readings within a cycle (the runner samples at this interval).
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming) -> None:
        self.plans = dict(plans)
        self.timing = timing

    @classmethod
    def run_options(cls, params: Any, network: Any) -> Dict[str, Any]:
        """Constructor options this controller takes from a run (`SimulationParams`, the built
        `NetworkArtifacts`); the runner passes them, so a new controller needs no edit there."""
        return {}

    def extra_lanes(self) -> List[str]:
        """Lanes beyond the signals' own links whose readings `decide` needs (e.g. streets
        between unsignalised junctions); the runner adds them to `LaneInfo`."""
        return []

    def additional_files(self, out_dir: Path) -> List[Path]:
        """Extra SUMO files this controller needs loaded (e.g. actuated programs)."""
        return []

    def programs_from_begin(self) -> List[str]:
        """Signals of a non-adaptive controller whose programs the run installs (generated, or
        written by `additional_files`): the runner starts their cycle at the run's begin. A net
        file's own programs left untouched keep SUMO's clock (offsets count from time 0, as in
        plain `sumo`)."""
        return []

    def shortest_green(self, num_phases: int) -> float:
        """The shortest green this controller gives a phase of a junction with `num_phases`."""
        return float(self.timing.min_green)

    def fixed_junctions(self) -> List[str]:
        """Junctions (of two or more phases) whose green budget leaves no second above the
        shortest greens: a cycle-based controller cannot move green there, it runs fixed time."""
        return [tls for tls, p in self.plans.items() if p.num_phases > 1
                and self.timing.green_budget(p.num_phases) - p.num_phases * self.shortest_green(p.num_phases) < 1]

    def initial_durations(self) -> Dict[str, np.ndarray]:
        """The programs' own greens (an equal split for hand-built plans)."""
        return {tls: program_durations(p, self.timing) for tls, p in self.plans.items()}

    def reset(self) -> None:
        """Forget state between episodes."""

    @abstractmethod
    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        """Green durations per junction for the next cycle."""


class PhaseSelectController(SignalController):
    """An acyclic controller: every decision interval it names, for each junction that may
    switch (its minimum green served), the green to hold next; `PhaseActuator` does the rest."""

    mode = "phase_select"

    def bind(self, api: Any, actuator: Any, lanes: LaneInfo) -> None:
        """Called once before the run with the simulation, the `PhaseActuator` and the lanes:
        for controllers that observe more than queues (the RL policy reads lane loads and the
        time each green has lasted, as its env did in training)."""

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        raise TypeError(f"{self.name} chooses phases (select), it does not split cycles")

    @abstractmethod
    def select(self, queues: np.ndarray, lanes: LaneInfo, current: Mapping[str, int],
               ready: Sequence[str]) -> Dict[str, int]:
        """The green phase each junction of `ready` holds next, from the lanes' queues."""


def warn_if_fixed(controller: SignalController) -> None:
    """One warning line when an adaptive cycle-based controller cannot act on some junctions'
    programs (all their greens at its minimum), instead of silently equalling fixed time."""
    if not controller.adaptive or controller.mode != "cycle":
        return
    stuck = controller.fixed_junctions()
    if not stuck:
        return
    n = controller.plans[stuck[0]].num_phases
    logger.warning("%s cannot move green at %d of %d junctions (e.g. %s: %d greens of at least %g s and their "
                   "transitions fill the %g s cycle), which run as fixed time; give a longer --cycle-length or a "
                   "shorter --min-green", controller.name, len(stuck), len(controller.plans), stuck[0], n,
                   controller.shortest_green(n), controller.timing.cycle_length)


def keeps_programs(params: Any) -> bool:
    """Whether a run (`SimulationParams`) keeps a net file's own signal programs."""
    return resolved_signal_programs(params.network) == KEEP_PROGRAMS


def phase_lane_indices(plan: PhasePlan, lanes: LaneInfo) -> List[Sequence[tuple]]:
    """For each phase, the (incoming index, outgoing index) pairs of the links it serves."""
    return [
        [(lanes.index[i], lanes.index[o]) for i, o in plan.served_links(p)]
        for p in range(plan.num_phases)
    ]
