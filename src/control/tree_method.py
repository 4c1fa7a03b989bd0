"""Tree Method signal control (Serok, Havlin, Blumenfeld-Lieberthal: congestion trees).

Once per calculation interval (= one signal cycle, `CycleTiming.cycle_length`, 90 s by
default) the controller measures every street, finds the congestion trees of the network,
prices them in vehicle-hours and moves the green split of every junction one "baby step"
towards the split that is proportional to the cost each phase serves.

Links
-----
* body link = an edge (lane id minus its trailing ``_<index>``), aggregating its lanes;
* head link = one incoming lane of a signalised junction (the lanes the phases serve).
Edges are not split: a head link is physically part of its body link. Heads are only used
to hand a trunk's cost to the phases (below); trees are built over body links.
Connectivity comes from the `PhasePlan` links ``(in_lane, out_lane)``: edge D is
*downstream* of edge E (E is *upstream* of D) when a lane of E links into a lane of D at
the junction where E ends. Edges that only leave the signalised area (no plan link starts
on them) have a measured speed but no known downstream, so they never become trunks.

Measurements (per lane l, over the interval of T seconds, from `CycleMeasurement`)
------------------------------------------------------------------------------------
* ``n_l``   [veh]  mean number of vehicles on the lane (`mean_vehicles`, a sample every 5 s);
* ``v_l``   [m/s]  mean speed (`mean_speed`; an empty sample counts as the speed limit),
  clipped to ``[0, v_free_l]``;
* ``v_free_l`` [m/s] the lane's speed limit; ``len_l`` [m] the lane's length.
Body link E: ``N_E = sum_l n_l`` [veh], ``v_E = sum_l n_l v_l / N_E`` [m/s] (vehicle-weighted;
``v_free_E`` when ``N_E = 0``), ``v_free_E`` = mean speed limit of its lanes [m/s].

Speed-density relation and congestion
-------------------------------------
    u(k) = u_free * (1 - (k / K_MAX) ** (L - 1)) ** (1 / (1 - M))
with k the density [veh/km/lane], ``K_MAX = 150`` veh/km/lane (jam density), ``M = 0.8`` and
``L = 2.8`` (dimensionless). The flow of a link is ``q(k) = u(k) * k * lanes``; the speed of
maximum flow ``q_max_u(u_free) = u(k*)`` with ``k* = argmax q`` is found numerically
(`speed_at_max_flow`, cached per free speed; for these constants it equals
``0.59049 * u_free``, at ``k* = 0.1**(1/1.8) * K_MAX ~ 41.7`` veh/km/lane).

A body link E is **congested** ("loaded") in an interval exactly when

    N_E > 0   and   v_E < speed_factor * q_max_u(v_free_E)

with ``speed_factor`` the constructor argument (CLI ``--tree-method-speed-factor``,
default 1.2, as in the original implementation; with 1.2 the threshold is 0.7086 u_free).

Cost
----
Cost of a link = extra travel time over free flow of the vehicles that used it in the
interval, in vehicle-hours [veh*h]:

    cost = len * (1/v - 1/v_free) * F / 3600,     F = n * v * T / len

where F [veh per interval] is the flow through the link during the interval, from the
fundamental relation flow = density * speed (``n / len`` vehicles per metre moving at ``v``
m/s for ``T`` s). Substituted, ``cost = n * T * (1 - v / v_free) / 3600``: the vehicle-seconds
spent on the link times the fraction of free-flow speed lost. This closed form is what is
computed (per lane, summed per edge); it stays finite for a standing queue (v = 0).

Congestion trees
----------------
* A **trunk** is a congested body link that ends at a signalised junction (it has head
  links) and of whose downstream edges at least one is *not* congested: its queue can
  discharge when it gets green. (A congested link whose downstream is congested everywhere
  is not a trunk; its congestion belongs to the trees downstream of it.) A link is the
  trunk of at most one tree, its own.
* The **tree** of trunk T = T plus every congested edge reachable from T by going upstream
  through congested edges only (stopping at non-congested edges). A link may belong to
  several trees (e.g. it feeds two congested trunks).
* A link's cost is shared equally by the trees containing it; a tree's cost (the sum of
  those shares) is the cost of its trunk.
Fully congested loops without any trunk (gridlock) carry no cost.

Phase cost and update
---------------------
The trunk's cost is split over its head lanes in proportion to each lane's mean number of
vehicles in the interval (equal split if the trunk's lanes were all empty); the share of
a head lane is split equally over the phases that give any of its links green ('G'/'g').
A junction's phase costs C_p are the sums of those shares [veh*h].

Baby step: the target split is cost-proportional, ``target_p = min_green + spare * C_p /
sum(C)`` with ``spare = green_budget - n_phases * min_green`` [s]. Each phase moves from
its current green (the durations of the cycle that just ended) towards its target by at
most ``step`` seconds: the whole change vector is scaled down so that its largest entry is
``step``, which keeps the sum of greens at ``green_budget`` and every green between its
current value and its target (so never below ``min_green``). Durations are then rounded to
whole seconds (largest remainder, sum preserved). The step depends on the junction's total
cost ``sum(C)`` expressed in **vehicle-minutes** (60 x the vehicle-hours):

    total cost [veh*min]   < 10   < 30   < 100   < 300   < 1000   >= 1000
    step [s]                 2      4      6      10      15       20

A junction with no cost keeps its current durations unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from src.control.actuator import CycleTiming, equal_durations
from src.control.base import CycleMeasurement, LaneInfo, SignalController
from src.network.phases import PhasePlan
from src.params import DEFAULT_TREE_METHOD_SPEED_FACTOR

#: Jam density [veh/km/lane].
K_MAX = 150.0
#: Shape parameters of the speed-density relation (dimensionless).
M = 0.8
L = 2.8
#: Default multiplier of the speed at maximum flow below which a link is congested.
DEFAULT_SPEED_FACTOR = DEFAULT_TREE_METHOD_SPEED_FACTOR
#: Junction total cost bounds [veh*min] and the baby step [s] below each bound (last: above).
STEP_COST_BOUNDS_VEH_MIN: Tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0)
STEP_SIZES_S: Tuple[float, ...] = (2.0, 4.0, 6.0, 10.0, 15.0, 20.0)
SECONDS_PER_HOUR = 3600.0
MINUTES_PER_HOUR = 60.0


# --- the speed-density relation ------------------------------------------------------------


def speed_at_density(k, u_free: float, k_max: float = K_MAX, m: float = M, l: float = L):
    """u(k) [same unit as u_free] for density k [veh/km/lane]; 0 at and beyond k_max."""
    x = np.clip(np.asarray(k, dtype=float) / k_max, 0.0, 1.0)
    return u_free * (1.0 - x ** (l - 1.0)) ** (1.0 / (1.0 - m))


def flow_at_density(k, u_free: float, lanes: int = 1):
    """q(k) = u(k) * k * lanes [veh/h when u_free is in km/h]."""
    return speed_at_density(k, u_free) * np.asarray(k, dtype=float) * lanes


@lru_cache(maxsize=256)
def _speed_at_max_flow(u_free: float, lanes: int) -> float:
    # q is unimodal on [0, K_MAX]: a coarse grid brackets the peak, ternary search refines it.
    grid = np.linspace(0.0, K_MAX, 1501)
    i = int(np.argmax(flow_at_density(grid, u_free, lanes)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(100):
        a, b = lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0
        if flow_at_density(a, u_free, lanes) < flow_at_density(b, u_free, lanes):
            lo = a
        else:
            hi = b
    return float(speed_at_density(0.5 * (lo + hi), u_free))


def speed_at_max_flow(u_free: float, lanes: int = 1) -> float:
    """q_max_u: the speed at which u(k) * k * lanes peaks (numerically, cached per free speed)."""
    return _speed_at_max_flow(round(float(u_free), 9), int(lanes))


def congestion_threshold(u_free: float, speed_factor: float = DEFAULT_SPEED_FACTOR) -> float:
    """Mean speed below which a link with free speed `u_free` is congested."""
    return speed_factor * speed_at_max_flow(u_free)


def link_cost_vh(length_m: float, speed: float, free_speed: float, flow_veh: float) -> float:
    """len [m] x (1/v - 1/v_free) [s/m] x F [veh] / 3600 -> [veh*h] (the textbook form)."""
    if speed <= 0:
        raise ValueError("use the closed form n * T * (1 - v/v_free) for standing traffic")
    return length_m * max(1.0 / speed - 1.0 / free_speed, 0.0) * flow_veh / SECONDS_PER_HOUR


def step_for_cost(total_cost_vh: float) -> float:
    """Baby step [s] for a junction whose phases carry `total_cost_vh` vehicle-hours."""
    cost_min = total_cost_vh * MINUTES_PER_HOUR
    for bound, step in zip(STEP_COST_BOUNDS_VEH_MIN, STEP_SIZES_S):
        if cost_min < bound:
            return step
    return STEP_SIZES_S[-1]


def round_preserving_sum(values: Sequence[float], total: float, minimum: float) -> np.ndarray:
    """Whole seconds, summing to round(total), each >= ceil(minimum) when that is feasible."""
    raw = np.asarray(values, dtype=float)
    out = np.floor(raw + 1e-9)
    remainder = int(round(total - out.sum()))
    if remainder > 0:
        order = np.argsort(-(raw - out), kind="stable")
        out[order[:remainder]] += 1
    floor_min = float(np.ceil(minimum - 1e-9))
    while (out < floor_min).any() and out.sum() >= floor_min * len(out):
        low, high = int(np.argmin(out)), int(np.argmax(out))
        out[low] += 1
        out[high] -= 1
    return out


def baby_step(current: np.ndarray, costs: np.ndarray, timing: CycleTiming) -> Tuple[np.ndarray, float, np.ndarray]:
    """(new whole-second durations, step used, float target) for one junction."""
    n = len(current)
    budget = timing.green_budget(n)
    total = float(costs.sum())
    if total <= 0 or not np.isfinite(total):
        return round_preserving_sum(current, budget, timing.min_green), 0.0, current.astype(float)
    spare = max(budget - n * timing.min_green, 0.0)
    target = timing.min_green + spare * costs / total
    step = step_for_cost(total)
    delta = target - current
    largest = float(np.abs(delta).max())
    if largest > step:
        delta *= step / largest
    return round_preserving_sum(current + delta, budget, timing.min_green), step, target


# --- the network as the method sees it -----------------------------------------------------


def edge_of_lane(lane_id: str) -> str:
    return lane_id.rsplit("_", 1)[0]


@dataclass
class _Graph:
    """Static structures, built once per lane set."""

    lane_ids: List[str]
    edge_ids: List[str]
    lane_edge: np.ndarray  # lane index -> edge index
    edge_free_speed: np.ndarray  # [m/s]
    edge_threshold: np.ndarray  # congestion speed threshold [m/s]
    down_src: np.ndarray  # edge pairs (E, D): D downstream of E
    down_dst: np.ndarray
    upstream: List[List[int]]  # edge -> edges upstream of it
    has_heads: np.ndarray  # edge ends at a signalised junction
    # edge -> [(tls id, head lane index, phases serving that lane)]
    heads: Dict[int, List[Tuple[str, int, np.ndarray]]]

    @classmethod
    def build(cls, plans: Mapping[str, PhasePlan], lanes: LaneInfo, speed_factor: float) -> "_Graph":
        edge_ids = sorted({edge_of_lane(l) for l in lanes.lane_ids})
        edge_index = {e: k for k, e in enumerate(edge_ids)}
        lane_edge = np.array([edge_index[edge_of_lane(l)] for l in lanes.lane_ids], dtype=int)
        n_edges = len(edge_ids)
        lane_count = np.bincount(lane_edge, minlength=n_edges)
        free = np.bincount(lane_edge, weights=lanes.speed_limits, minlength=n_edges) / np.maximum(lane_count, 1)
        threshold = np.array([congestion_threshold(v, speed_factor) for v in free])
        pairs = set()
        heads: Dict[int, List[Tuple[str, int, np.ndarray]]] = {}
        for tls in sorted(plans):
            plan = plans[tls]
            lane_phases: Dict[str, set] = {}
            for p in range(plan.num_phases):
                for i, o in plan.served_links(p):
                    lane_phases.setdefault(i, set()).add(p)
            for i, o, _ in plan.links:
                pairs.add((edge_index[edge_of_lane(i)], edge_index[edge_of_lane(o)]))
                lane_phases.setdefault(i, set())
            for lane, phases in sorted(lane_phases.items()):
                if phases:
                    heads.setdefault(edge_index[edge_of_lane(lane)], []).append(
                        (tls, lanes.index[lane], np.array(sorted(phases), dtype=int)))
        pairs_sorted = sorted(pairs)
        down_src = np.array([a for a, _ in pairs_sorted], dtype=int)
        down_dst = np.array([b for _, b in pairs_sorted], dtype=int)
        upstream: List[List[int]] = [[] for _ in range(n_edges)]
        for a, b in pairs_sorted:
            upstream[b].append(a)
        has_heads = np.zeros(n_edges, dtype=bool)
        has_heads[list(heads)] = True
        return cls(list(lanes.lane_ids), edge_ids, lane_edge, free, threshold, down_src, down_dst,
                   upstream, has_heads, heads)


@dataclass
class TreeState:
    """What the method computed in one interval (for inspection and tests)."""

    edge_ids: List[str]
    edge_vehicles: np.ndarray  # [veh]
    edge_speed: np.ndarray  # [m/s]
    edge_cost: np.ndarray  # [veh*h]
    congested: np.ndarray
    trees: Dict[str, List[str]] = field(default_factory=dict)  # trunk -> member edges
    tree_cost: Dict[str, float] = field(default_factory=dict)  # trunk -> [veh*h]
    phase_cost: Dict[str, np.ndarray] = field(default_factory=dict)  # tls -> [veh*h] per phase
    step: Dict[str, float] = field(default_factory=dict)  # tls -> [s]
    target: Dict[str, np.ndarray] = field(default_factory=dict)  # tls -> [s] per phase

    def cost_of(self, edge: str) -> float:
        return float(self.edge_cost[self.edge_ids.index(edge)])


class TreeMethodController(SignalController):
    """Tree Method: congestion trees priced in vehicle-hours, green moved in baby steps."""

    name = "tree_method"

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming,
                 speed_factor: float = DEFAULT_SPEED_FACTOR, **unused) -> None:
        super().__init__(plans, timing)
        if not speed_factor > 0:
            raise ValueError(f"--tree-method-speed-factor must be positive, got {speed_factor}")
        self.speed_factor = float(speed_factor)
        self._graph: Optional[_Graph] = None
        self._current: Dict[str, np.ndarray] = {}
        self.last_state: Optional[TreeState] = None

    def reset(self) -> None:
        self._current = {}
        self.last_state = None

    # -- the method, step by step --

    def _graph_for(self, lanes: LaneInfo) -> _Graph:
        if self._graph is None or self._graph.lane_ids != list(lanes.lane_ids):
            self._graph = _Graph.build(self.plans, lanes, self.speed_factor)
        return self._graph

    def analyse(self, m: CycleMeasurement) -> TreeState:
        """Link costs, congestion, trees and phase costs for one interval."""
        g = self._graph_for(m.lanes)
        n_edges = len(g.edge_ids)
        free_lane = np.asarray(m.lanes.speed_limits, dtype=float)
        n = np.clip(np.asarray(m.mean_vehicles, dtype=float), 0.0, None)
        v = np.clip(np.asarray(m.mean_speed, dtype=float), 0.0, free_lane)
        lane_cost = n * float(m.cycle_length) * (1.0 - v / np.where(free_lane > 0, free_lane, 1.0)) / SECONDS_PER_HOUR
        veh = np.bincount(g.lane_edge, weights=n, minlength=n_edges)
        moving = np.bincount(g.lane_edge, weights=n * v, minlength=n_edges)
        speed = np.where(veh > 0, moving / np.where(veh > 0, veh, 1.0), g.edge_free_speed)
        cost = np.bincount(g.lane_edge, weights=lane_cost, minlength=n_edges)
        congested = (veh > 0) & (speed < g.edge_threshold)
        state = TreeState(g.edge_ids, veh, speed, cost, congested)

        free_down = np.bincount(g.down_src, weights=(~congested[g.down_dst]).astype(float), minlength=n_edges) > 0
        trunks = np.flatnonzero(congested & g.has_heads & free_down)
        members: Dict[int, List[int]] = {}
        membership = np.zeros(n_edges)
        for t in trunks:
            seen = {int(t)}
            stack = [int(t)]
            while stack:
                for u in g.upstream[stack.pop()]:
                    if congested[u] and u not in seen:
                        seen.add(u)
                        stack.append(u)
            members[int(t)] = sorted(seen)
            membership[sorted(seen)] += 1
        share = np.where(membership > 0, cost / np.maximum(membership, 1), 0.0)

        phase_cost = {tls: np.zeros(p.num_phases) for tls, p in self.plans.items()}
        for t, tree in members.items():
            tree_cost = float(share[tree].sum())
            state.trees[g.edge_ids[t]] = [g.edge_ids[e] for e in tree]
            state.tree_cost[g.edge_ids[t]] = tree_cost
            heads = g.heads[t]
            weights = np.array([n[lane] for _, lane, _ in heads])
            weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(heads), 1.0 / len(heads))
            for (tls, _, phases), w in zip(heads, weights):
                phase_cost[tls][phases] += tree_cost * w / len(phases)
        state.phase_cost = phase_cost
        return state

    def _current_durations(self, tls: str, m: CycleMeasurement) -> np.ndarray:
        n = self.plans[tls].num_phases
        cur = m.last_durations.get(tls, self._current.get(tls))
        cur = None if cur is None else np.asarray(cur, dtype=float)
        budget = self.timing.green_budget(n)
        if (cur is None or len(cur) != n or abs(cur.sum() - budget) > 0.5
                or (cur < self.timing.min_green - 1e-9).any()):
            return equal_durations(n, self.timing)
        return cur

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        state = self.analyse(measurement)
        durations = {}
        for tls in self.plans:
            current = self._current_durations(tls, measurement)
            new, step, target = baby_step(current, state.phase_cost[tls], self.timing)
            state.step[tls] = step
            state.target[tls] = target
            durations[tls] = new
        self._current = {k: v.copy() for k, v in durations.items()}
        self.last_state = state
        return durations


def _register() -> None:
    from src.control import register_controller

    register_controller("tree_method", TreeMethodController)


_register()
