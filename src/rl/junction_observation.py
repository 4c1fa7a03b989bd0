"""What one junction sees in `phase_select` control: the input of the shared policy.

Every junction gets a vector of the same size (it depends only on the most phases any
junction of the network has, `max_phases`), so one policy network can be applied to each
junction (parameter sharing, as MPLight and RESCO's shared agents do) and a model trained on
one network runs on another whose junctions have no more phases than it has slots
(`phase_slots` pads the input to a fixed size for that). Per phase slot it holds the queue and
the load of the lanes that phase serves, the load of the lanes it feeds and the vehicles
waiting to enter the network on the edges it serves (SUMO's insertion backlog: without it a
junction cannot see that holding an approach red keeps vehicles out of the network); then
the current green (one-hot), which phase slots exist, the time the green has lasted and
whether it may be left now. Values lie in [0, 1].

The same class serves the env (training) and `RLController` (evaluation), from lane counts
read once per decision.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from src.control.actuator import PhaseActuator
from src.control.base import LaneInfo, phase_lane_indices
from src.network.phases import PhasePlan
from src.sumo_integration.simulation import lane_getter
from src.rl.traffic_analysis import JAM_SPACING_M

#: Seconds of green at which the "time in green" feature saturates at 1.
GREEN_TIME_SCALE_S = 60.0
#: Features per phase slot (incoming queue, incoming load, outgoing load, entry backlog).
PER_PHASE = 4


def junction_observation_size(max_phases: int) -> int:
    """Length of one junction's observation for a network whose junctions have up to `max_phases`."""
    return PER_PHASE * max_phases + 2 * max_phases + 2


def slot_exists_columns(max_phases: int) -> Tuple[int, int]:
    """[start, stop) of the "this phase slot exists" flags in a junction observation: the
    policy masks the slots a junction lacks with them (`SlotMaskedPolicy`), so they pass
    through observation normalisation unchanged."""
    start = PER_PHASE * max_phases + max_phases
    return start, start + max_phases


class PhaseSlotError(ValueError):
    """A junction has more phases than the policy input has slots."""


def phase_slots_for(plans: Mapping[str, Any], phase_slots: Optional[int] = None) -> int:
    """Phase slots of the junction input: the network's most phases, or `phase_slots` (a fixed
    size, so one junction-shared policy runs on networks of other phase counts)."""
    most = max((p.num_phases for p in plans.values()), default=1)
    if phase_slots is None:
        return most
    if most > int(phase_slots):
        busiest = max(plans, key=lambda t: plans[t].num_phases)
        raise PhaseSlotError(f"signal {busiest} has {most} phases, more than the policy's {int(phase_slots)} phase slots")
    return int(phase_slots)


def phase_select_dimensions(plans: Mapping[str, Any], phase_slots: Optional[int] = None) -> Dict[str, int]:
    """Sizes of the phase_select spaces of a network: per junction, and network-wide
    (`max_phases`: the phase slots, see `phase_slots_for`)."""
    max_phases = phase_slots_for(plans, phase_slots)
    local = junction_observation_size(max_phases)
    return {"signals": len(plans), "max_phases": max_phases, "junction_observation": local,
            "observation": local * len(plans), "action": len(plans)}


def _membership(rows: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """0/1 matrix (rows x columns) with row r set at the indices `rows[r]`: sums over index
    sets become one matrix product (exact: the counts summed are whole numbers)."""
    matrix = np.zeros((len(rows), columns))
    for r, indices in enumerate(rows):
        matrix[r, indices] = 1.0
    return matrix


class JunctionObserver:
    """Local observations and lane groups of every signalised junction, in sorted id order.

    Every lane, edge and phase relation is turned into index arrays and 0/1 matrices once per
    network, so a decision reads each lane once and computes all junctions' views as array
    operations."""

    def __init__(self, plans: Mapping[str, PhasePlan], lanes: LaneInfo, phase_slots: Optional[int] = None) -> None:
        self.plans = dict(sorted(plans.items()))
        self.tls_ids: List[str] = list(self.plans)
        self.lanes = lanes
        self.max_phases = phase_slots_for(self.plans, phase_slots)
        self.num_phases = np.array([p.num_phases for p in self.plans.values()], dtype=int)
        self.capacity = np.maximum(lanes.lengths / JAM_SPACING_M, 1.0)
        junctions, slots = len(self.tls_ids), len(self.tls_ids) * self.max_phases
        movements: List[List[Sequence[Tuple[int, int]]]] = []  # per junction, per phase: (in, out) lanes
        self.incoming: List[np.ndarray] = []
        phase_in: List[np.ndarray] = [np.zeros(0, dtype=int)] * slots  # (junction, phase slot) -> lanes
        phase_out: List[np.ndarray] = [np.zeros(0, dtype=int)] * slots
        for k, plan in enumerate(self.plans.values()):
            phases = phase_lane_indices(plan, lanes)
            movements.append(phases)
            self.incoming.append(np.array(sorted({i for links in phases for i, _ in links}), dtype=int))
            for phase, links in enumerate(phases):
                phase_in[k * self.max_phases + phase] = np.array(sorted({i for i, _ in links}), dtype=int)
                phase_out[k * self.max_phases + phase] = np.array(sorted({o for _, o in links}), dtype=int)
        #: Every incoming lane of every junction, and the junction each belongs to (for rewards).
        self.incoming_lanes = np.concatenate(self.incoming) if self.incoming else np.zeros(0, dtype=int)
        self.incoming_owner = np.concatenate([np.full(len(a), k) for k, a in enumerate(self.incoming)]) \
            if self.incoming else np.zeros(0, dtype=int)
        self._incoming_ids = [lanes.lane_ids[i] for i in self.incoming_lanes]
        # distinct movements (incoming, outgoing lane) and their junction, for the pressure
        distinct = [sorted({m for links in phases for m in links}) for phases in movements]
        self._move_in = np.array([i for moves in distinct for i, _ in moves], dtype=int)
        self._move_out = np.array([o for moves in distinct for _, o in moves], dtype=int)
        self._move_owner = np.array([k for k, moves in enumerate(distinct) for _ in moves], dtype=int)
        # per phase slot: lane sums as matrix rows, and the capacity each sum is divided by
        # (summed as the per-lane implementation summed it, so every value stays the same)
        self._in_matrix = _membership(phase_in, len(lanes.lane_ids))
        self._out_matrix = _membership(phase_out, len(lanes.lane_ids))
        self._in_capacity = np.array([self.capacity[l].sum() if len(l) else 1.0 for l in phase_in])
        self._out_capacity = np.array([self.capacity[l].sum() if len(l) else 1.0 for l in phase_out])
        self._has_in = np.array([len(l) > 0 for l in phase_in])
        self._has_out = np.array([len(l) > 0 for l in phase_out])
        # Incoming edge -> (junction, phases serving one of its lanes): where a vehicle waiting
        # to depart on that edge is counted. The first junction an edge leads into keeps it.
        edge_slots: Dict[str, Tuple[int, List[int]]] = {}
        for k in range(junctions):
            for phase in range(self.num_phases[k]):
                for i in phase_in[k * self.max_phases + phase]:
                    edge = lanes.lane_ids[i].rsplit("_", 1)[0]
                    junction, phases = edge_slots.setdefault(edge, (k, []))
                    if junction == k and phase not in phases:
                        phases.append(phase)
        #: Incoming edge -> its row in the edge -> junction and edge -> phase matrices.
        self._edges = {edge: e for e, edge in enumerate(edge_slots)}
        #: Vehicle -> row of its departure edge (-1: an edge into no signal), asked once per vehicle.
        self._departure_edge: Dict[str, int] = {}
        self._edge_junction = _membership([np.array([k]) for k, _ in edge_slots.values()], junctions)
        self._edge_phase = _membership([np.array([k * self.max_phases + p for p in phases], dtype=int)
                                        for k, phases in edge_slots.values()], slots)
        self._exists = (np.arange(self.max_phases)[None, :] < self.num_phases[:, None]).astype(np.float32)
        #: Per junction, and per (junction, phase slot): vehicles waiting to enter (last read).
        self.pending = np.zeros(junctions)
        self.pending_by_phase = np.zeros((junctions, self.max_phases))
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
        ids, count = self.lanes.lane_ids, len(self.lanes.lane_ids)
        vehicles = np.fromiter(map(lane_getter(api, "getLastStepVehicleNumber"), ids), dtype=float, count=count)
        halting = np.fromiter(map(lane_getter(api, "getLastStepHaltingNumber"), ids), dtype=float, count=count)
        return vehicles, halting

    def read_incoming_halting(self, api) -> np.ndarray:
        """Halting vehicles on each junction's incoming lanes right now, per junction."""
        halting = np.fromiter(map(lane_getter(api, "getLastStepHaltingNumber"), self._incoming_ids), dtype=float,
                              count=len(self._incoming_ids))
        return np.bincount(self.incoming_owner, weights=halting, minlength=len(self.tls_ids))

    def incoming_total(self, counts: np.ndarray) -> np.ndarray:
        """Per junction: the sum of `counts` (indexed like the lanes) over its incoming lanes."""
        return np.bincount(self.incoming_owner, weights=counts[self.incoming_lanes], minlength=len(self.tls_ids))

    def forget_vehicles(self) -> None:
        """A new simulation: a vehicle id may name another vehicle (another route file)."""
        self._departure_edge.clear()

    def read_pending(self, api) -> None:
        """Count the vehicles SUMO could not insert yet by the junction (and phases) whose
        incoming edge they wait for; each vehicle's departure edge is asked once."""
        known, edges = self._departure_edge, self._edges
        pending = api.simulation.getPendingVehicles()
        rows = [known.get(vehicle) for vehicle in pending]
        if None in rows:
            for k, vehicle in enumerate(pending):
                if rows[k] is None:
                    rows[k] = known[vehicle] = edges.get(api.vehicle.getRoute(vehicle)[0], -1)
        by_edge = np.bincount(np.asarray(rows, dtype=int) + 1, minlength=len(edges) + 1)
        self.pending_elsewhere = float(by_edge[0])
        self.pending = by_edge[1:] @ self._edge_junction
        self.pending_by_phase = (by_edge[1:] @ self._edge_phase).reshape(len(self.tls_ids), self.max_phases)

    def observe(self, vehicles: np.ndarray, halting: np.ndarray, actuator: PhaseActuator, now: float) -> np.ndarray:
        """(junctions, size) observations from lane counts, the last `read_pending` and the
        actuator's state."""
        junctions, p = len(self.tls_ids), self.max_phases
        obs = np.zeros((junctions, self.size), dtype=np.float32)
        per_phase = obs[:, :PER_PHASE * p].reshape(junctions, p, PER_PHASE)
        shape = (junctions, p)
        per_phase[:, :, 0] = np.where(self._has_in, np.minimum(self._in_matrix @ halting / self._in_capacity, 1.0),
                                      0.0).reshape(shape)
        per_phase[:, :, 1] = np.where(self._has_in, np.minimum(self._in_matrix @ vehicles / self._in_capacity, 1.0),
                                      0.0).reshape(shape)
        per_phase[:, :, 2] = np.where(self._has_out, np.minimum(self._out_matrix @ vehicles / self._out_capacity, 1.0),
                                      0.0).reshape(shape)
        per_phase[:, :, 3] = (np.minimum(self.pending_by_phase.ravel() / self._in_capacity, 1.0) * self._has_in
                              ).reshape(shape) * self._exists
        base = PER_PHASE * p
        current = np.fromiter((actuator.current[t] for t in self.tls_ids), dtype=int, count=junctions)
        obs[np.arange(junctions), base + current] = 1.0
        flags = slot_exists_columns(p)
        obs[:, flags[0]:flags[1]] = self._exists
        in_green = now - np.fromiter((actuator.green_since[t] for t in self.tls_ids), dtype=float, count=junctions)
        obs[:, base + 2 * p] = np.minimum(np.maximum(in_green, 0.0) / GREEN_TIME_SCALE_S, 1.0)
        obs[:, base + 2 * p + 1] = in_green >= actuator.timing.min_green - 1e-9
        return obs

    def pressure(self, halting: np.ndarray) -> np.ndarray:
        """Per junction: sum over its distinct movements of incoming minus outgoing queue (PressLight)."""
        return np.bincount(self._move_owner, weights=halting[self._move_in] - halting[self._move_out],
                           minlength=len(self.tls_ids))

    def phases_from_actions(self, actions: np.ndarray, current: Mapping[str, int]) -> Dict[str, int]:
        """The green each junction asks for; a slot beyond its own phases means 'keep the current'
        (a `SlotMaskedPolicy` never asks for one; older unmasked models may)."""
        chosen = {}
        for k, tls in enumerate(self.tls_ids):
            a = int(actions[k])
            chosen[tls] = a if 0 <= a < self.num_phases[k] else current[tls]
        return chosen
