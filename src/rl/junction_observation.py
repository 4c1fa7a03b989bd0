"""What one junction sees in `phase_select` control: the input of the shared policy.

Every junction gets a vector of the same size (it depends only on the most phases any
junction of the network has, `max_phases`), so one policy network can be applied to each
junction (parameter sharing, as MPLight and RESCO's shared agents do) and a model trained on
one network runs on another with the same phase count. Per phase slot it holds the queue and
the load of the lanes that phase serves, the load of the lanes it feeds and the vehicles
waiting to enter the network on the edges it serves (SUMO's insertion backlog: without it a
junction cannot see that holding an approach red keeps vehicles out of the network); then
the current green (one-hot), which phase slots exist, the time the green has lasted and
whether it may be left now. Values lie in [0, 1].

The same class serves the env (training) and `RLController` (evaluation), from lane counts
read once per decision.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from src.control.actuator import PhaseActuator
from src.control.base import LaneInfo, phase_lane_indices
from src.network.phases import PhasePlan
from src.rl.traffic_analysis import JAM_SPACING_M, movement_pressure

#: Seconds of green at which the "time in green" feature saturates at 1.
GREEN_TIME_SCALE_S = 60.0
#: Features per phase slot (incoming queue, incoming load, outgoing load, entry backlog).
PER_PHASE = 4


def junction_observation_size(max_phases: int) -> int:
    """Length of one junction's observation for a network whose junctions have up to `max_phases`."""
    return PER_PHASE * max_phases + 2 * max_phases + 2


def phase_select_dimensions(plans: Mapping[str, Any]) -> Dict[str, int]:
    """Sizes of the phase_select spaces of a network: per junction, and network-wide."""
    max_phases = max((p.num_phases for p in plans.values()), default=1)
    local = junction_observation_size(max_phases)
    return {"signals": len(plans), "max_phases": max_phases, "junction_observation": local,
            "observation": local * len(plans), "action": len(plans)}


class JunctionObserver:
    """Local observations and lane groups of every signalised junction, in sorted id order."""

    def __init__(self, plans: Mapping[str, PhasePlan], lanes: LaneInfo) -> None:
        self.plans = dict(sorted(plans.items()))
        self.tls_ids: List[str] = list(self.plans)
        self.lanes = lanes
        self.max_phases = max((p.num_phases for p in self.plans.values()), default=1)
        self.num_phases = np.array([p.num_phases for p in self.plans.values()], dtype=int)
        self.capacity = np.maximum(lanes.lengths / JAM_SPACING_M, 1.0)
        self.movements: List[List[Sequence[Tuple[int, int]]]] = []
        self.incoming: List[np.ndarray] = []
        self._phase_in: List[List[np.ndarray]] = []
        self._phase_out: List[List[np.ndarray]] = []
        for plan in self.plans.values():
            phases = phase_lane_indices(plan, lanes)
            self.movements.append(phases)
            self.incoming.append(np.array(sorted({i for links in phases for i, _ in links}), dtype=int))
            self._phase_in.append([np.array(sorted({i for i, _ in links}), dtype=int) for links in phases])
            self._phase_out.append([np.array(sorted({o for _, o in links}), dtype=int) for links in phases])
        #: Every incoming lane of every junction, and the junction each belongs to (for rewards).
        self.incoming_lanes = np.concatenate(self.incoming) if self.incoming else np.zeros(0, dtype=int)
        self.incoming_owner = np.concatenate([np.full(len(a), k) for k, a in enumerate(self.incoming)]) \
            if self.incoming else np.zeros(0, dtype=int)
        # Incoming edge -> (junction, phases serving one of its lanes): where a vehicle waiting
        # to depart on that edge is counted.
        self._edge_slots: Dict[str, Tuple[int, List[int]]] = {}
        for k in range(len(self.tls_ids)):
            for phase, lanes_in in enumerate(self._phase_in[k]):
                for i in lanes_in:
                    edge = lanes.lane_ids[i].rsplit("_", 1)[0]
                    junction, phases = self._edge_slots.setdefault(edge, (k, []))
                    if junction == k and phase not in phases:
                        phases.append(phase)
        self._phase_capacity = [[float(self.capacity[l].sum()) if len(l) else 1.0 for l in phases]
                                for phases in self._phase_in]
        self._departure_edge: Dict[str, str] = {}
        #: Per junction, and per (junction, phase slot): vehicles waiting to enter (last read).
        self.pending = np.zeros(len(self.tls_ids))
        self.pending_by_phase = np.zeros((len(self.tls_ids), self.max_phases))
        #: Waiting vehicles whose departure edge leads into no signal (shared by all in rewards).
        self.pending_elsewhere = 0.0

    @property
    def size(self) -> int:
        return junction_observation_size(self.max_phases)

    @property
    def phase_counts(self) -> Dict[str, int]:
        return {tls: int(n) for tls, n in zip(self.tls_ids, self.num_phases)}

    def read_lanes(self, api) -> Tuple[np.ndarray, np.ndarray]:
        """Vehicle and halting counts of every observed lane right now."""
        lane = api.lane
        ids = self.lanes.lane_ids
        vehicles = np.fromiter((lane.getLastStepVehicleNumber(l) for l in ids), dtype=float, count=len(ids))
        halting = np.fromiter((lane.getLastStepHaltingNumber(l) for l in ids), dtype=float, count=len(ids))
        return vehicles, halting

    def read_incoming_halting(self, api) -> np.ndarray:
        """Halting vehicles on each junction's incoming lanes right now, per junction."""
        lane = api.lane
        ids = self.lanes.lane_ids
        halting = np.fromiter((lane.getLastStepHaltingNumber(ids[i]) for i in self.incoming_lanes), dtype=float,
                              count=len(self.incoming_lanes))
        return np.bincount(self.incoming_owner, weights=halting, minlength=len(self.tls_ids))

    def incoming_total(self, counts: np.ndarray) -> np.ndarray:
        """Per junction: the sum of `counts` (indexed like the lanes) over its incoming lanes."""
        return np.bincount(self.incoming_owner, weights=counts[self.incoming_lanes], minlength=len(self.tls_ids))

    def read_pending(self, api) -> None:
        """Count the vehicles SUMO could not insert yet by the junction (and phases) whose
        incoming edge they wait for; each vehicle's departure edge is asked once."""
        self.pending[:] = 0.0
        self.pending_by_phase[:] = 0.0
        self.pending_elsewhere = 0.0
        for vehicle in api.simulation.getPendingVehicles():
            edge = self._departure_edge.get(vehicle)
            if edge is None:
                edge = self._departure_edge[vehicle] = api.vehicle.getRoute(vehicle)[0]
            slot = self._edge_slots.get(edge)
            if slot is None:
                self.pending_elsewhere += 1.0
                continue
            k, phases = slot
            self.pending[k] += 1.0
            self.pending_by_phase[k, phases] += 1.0

    def _load(self, counts: np.ndarray, lanes: np.ndarray) -> float:
        return float(min(counts[lanes].sum() / self.capacity[lanes].sum(), 1.0)) if len(lanes) else 0.0

    def observe(self, vehicles: np.ndarray, halting: np.ndarray, actuator: PhaseActuator, now: float) -> np.ndarray:
        """(junctions, size) observations from lane counts, the last `read_pending` and the
        actuator's state."""
        p = self.max_phases
        obs = np.zeros((len(self.tls_ids), self.size), dtype=np.float32)
        for k, tls in enumerate(self.tls_ids):
            row = obs[k]
            for phase in range(self.num_phases[k]):
                lanes_in, lanes_out = self._phase_in[k][phase], self._phase_out[k][phase]
                row[PER_PHASE * phase] = self._load(halting, lanes_in)
                row[PER_PHASE * phase + 1] = self._load(vehicles, lanes_in)
                row[PER_PHASE * phase + 2] = self._load(vehicles, lanes_out)
                row[PER_PHASE * phase + 3] = min(self.pending_by_phase[k, phase] / self._phase_capacity[k][phase], 1.0)
            base = PER_PHASE * p
            row[base + actuator.current[tls]] = 1.0
            row[base + p: base + p + self.num_phases[k]] = 1.0
            in_green = now - actuator.green_since[tls]
            row[base + 2 * p] = min(max(in_green, 0.0) / GREEN_TIME_SCALE_S, 1.0)
            row[base + 2 * p + 1] = 1.0 if in_green >= actuator.timing.min_green - 1e-9 else 0.0
        return obs

    def pressure(self, halting: np.ndarray) -> np.ndarray:
        """Per junction: sum over its movements of incoming minus outgoing queue (PressLight)."""
        return movement_pressure(self.movements, halting)

    def phases_from_actions(self, actions: np.ndarray, current: Mapping[str, int]) -> Dict[str, int]:
        """The green each junction asks for; a slot beyond its own phases means 'keep the current'."""
        chosen = {}
        for k, tls in enumerate(self.tls_ids):
            a = int(actions[k])
            chosen[tls] = a if 0 <= a < self.num_phases[k] else current[tls]
        return chosen
