"""Tree Method signal control (Serok, Havlin, Blumenfeld-Lieberthal: congestion trees).

Faithful to the authors' reference implementation (public repository
`nimrodSerokTAU/decentralized-traffic-bottlenecks`, folder `code/tree_traffic_control/`; the
file and function each rule matches is named below and next to each constant). This is our
own code; only the method's facts, formulas and constants are taken from there.

Once per calculation interval (= one signal cycle, 90 s by default as in the study) the
controller prices every congested street, groups the congested streets into congestion
trees, hands each tree's cost to the phases that discharge its trunk and moves every
junction's green split one "baby step".

Links (`classes/net_data_builder.py`, `classes/graph.py` `Graph.build`)
-----------------------------------------------------------------------
A *link* is a street between junctions: a SUMO edge. The study's networks split a street
into a tail ``<body>_T``, a body ``<body>`` and one head per movement group
``<body>_H_<x>``; such pieces belong to the body's link (`link_of_edge`), the body's lanes are
measured, the heads' lanes are its *head lanes*. Link D is downstream of link E when a lane of
E connects to a lane of D at any junction, signalised or not: with the net file
(`net_file=`) the links and connections are the whole road network, so trees cross
unsignalised junctions; without it only the signals' own links are known. (The authors
connect a street only through its head segments; on their split networks, where every
junction between streets is signalised, that is the same graph. On networks with real
unsignalised junctions we follow the road network instead of ending trees there.)
A link *leads to a signal* when it has head lanes: incoming lanes of a signal's links.
A head is a lane here (a head segment, all of whose lanes share their phases, on the study's
networks), so its vehicles and phases are counted per lane.

Measurements (`Link.fill_my_speed`, `Link.add_speed_to_calculation`)
--------------------------------------------------------------------
``v`` [km/h] = vehicle-weighted mean speed of the link's body lanes over the interval (the
speed limit while empty), rounded to whole km/h and at least ``MIN_SPEED_KMH`` = 3 km/h.
(The authors read the edge speed every second; the runner samples lanes every 5 s.)

Fundamental diagram (`Link.calc_u_by_k`, `Link.calc_max_properties`, `Link.calc_k_by_u`)
----------------------------------------------------------------------------------------
    u(k) = max(round(u_f * (1 - (k / K_MAX) ** (L - 1)) ** (1 / (1 - M))), 3)   [km/h]
    q(k) = u(k) * k * lanes                                                     [veh/h]
with k [veh/km/lane] on the whole numbers 0..K_MAX-1, K_MAX = 150, M = 0.8, L = 2.8.
``q_max_u`` = u at the first k of maximal q (29 km/h for u_f = 50 km/h). Density from a
measured speed, the authors' formula (note: not the algebraic inverse of u(k)):
    k(v) = max(round(K_MAX * ((max(1 - v / u_f, 0)) ** (1 - M)) ** (1 / (L - 1))), 0)

Congestion and cost (`Link.calc_my_iteration_data`)
---------------------------------------------------
A link is *loaded* when ``v < speed_factor * q_max_u`` (speed_factor 1.0: the authors').
A loaded link costs, per interval of T s, in vehicle-minutes (rounded to whole minutes):
    flow  = v * k(v) * lanes * T / 3600                        [veh per interval]
    d(x)  = min(round(x * T / 3.6), length)                    [m driven in T at x km/h]
    loss  = (d(v) / v - d(q_max_u) / q_max_u) * 60 / 1000      [min per vehicle]
    cost  = round(flow * loss)                                 [veh*min]
i.e. the time lost against driving at the speed of maximum flow, over the part of the link a
vehicle covers in one interval. Free links cost nothing.

Congestion trees (`classes/iterations_trees.py` `IterationTrees.calc_spatial_load_trees`,
`classes/current_load_tree.py`, `classes/load_tree_branch.py`)
--------------------------------------------------------------------------------------
* trunks: every loaded link that leads to a signal, and every loaded link none of whose
  downstream links is loaded;
* the tree of a trunk: the trunk and every loaded link reached from it upstream through
  loaded links (so a loaded link that leads to a signal is a trunk *and* may be a branch of
  the tree downstream of it);
* a link in n trees counts ``round(1/n, 2)`` of its cost in each (`Link.fill_my_cost_and_weight`,
  cost type TREE_CURRENT_DIVIDED), rounded to 0.01 veh*min; a tree's cost is the sum.

Phase cost (`Link.calc_heads_costs`, `classes/phase.py` `Phase.calc_my_cost`, IS_DIVIDE_COST)
-------------------------------------------------------------------------------------------
A trunk's tree cost is split over its head lanes in proportion to their mean number of
vehicles in the interval (equally if all were empty; the authors divide by zero there), and
a head lane's share equally over the phases that give it priority green 'G' (the authors'
rule; a lane that never has 'G', e.g. a permissive left turn of our generated programs,
counts its 'g' phases instead). Trees whose trunk leads to no signal price nothing.

Baby steps (`classes/node.py` `JunctionNode.calc_wanted_program`, BABY_STEPS;
`classes/algo_config.py` `CostToStepSize`)
-----------------------------------------------------------------------------
With C_p the phase costs, C = sum C_p [veh*min], the step s [s] from C:
    C [veh*min]  < 10   < 30   < 100   < 300   < 1000   >= 1000
    s [s]          2      4      6      10      15       20
every phase is cut to ``r_p = max(d_p - s, min_phase)``, the freed time ``F = sum(d_p - r_p)``
is handed back by cost share, each phase at most ``d_p + s``:
    n_p = min(round(C_p / max(C, 1) * F + r_p), d_p + s)
and what is left of the green budget is spread evenly, the odd seconds to the first phases.
The minimum phase is ``MIN_PHASE_S`` = 10 s (`config.py` MIN_PHASE_TIME). The green budget is
the cycle minus the yellows of our programs (the study's programs have none: yellow 0).
The starting split is the program's own durations (`JunctionNode.add_my_phases`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from src.control.actuator import CycleTiming
from src.control.base import CycleMeasurement, LaneInfo, SignalController
from src.network.phases import PhasePlan
from src.params import DEFAULT_TREE_METHOD_SPEED_FACTOR

# --- the authors' constants, one place ----------------------------------------------------
#: Jam density [veh/km/lane] (`config.py` MAX_DENSITY).
K_MAX = 150
#: Shape parameters of the speed-density relation (`config.py` M, L).
M = 0.8
L = 2.8
#: Lowest speed the method works with [km/h] (`config.py` MIN_VELOCITY).
MIN_SPEED_KMH = 3
#: Shortest green phase [s] (`config.py` MIN_PHASE_TIME).
MIN_PHASE_S = 10
#: Loaded below this x q_max_u (`Link.calc_my_iteration_data`: factor 1); see `src.params`.
DEFAULT_SPEED_FACTOR = DEFAULT_TREE_METHOD_SPEED_FACTOR
#: Junction total cost bounds [veh*min] and the baby step [s] below each (last: above)
#: (`algo_config.py` CostToStepSize; its 25 s beyond 10^7 veh*min is never reached).
STEP_COST_BOUNDS_VEH_MIN: Tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0)
STEP_SIZES_S: Tuple[int, ...] = (2, 4, 6, 10, 15, 20)
#: Decimals of a link's tree weight and of its cost share (`Link.fill_my_cost_and_weight`).
SHARE_DECIMALS = 2
#: Marks of the study's split streets (`net_data_builder.py` NetworkData.read_file).
HEAD_MARK, TAIL_SUFFIX = "_H_", "_T"
KMH_PER_MS = 3.6
#: Lane readings every simulation second (`runner.py` reads every link after each step).
SAMPLE_INTERVAL_S = 1.0


# --- the fundamental diagram --------------------------------------------------------------


def speed_at_density_kmh(k: float, u_free_kmh: float) -> int:
    """u(k) in whole km/h, never below MIN_SPEED_KMH (`Link.calc_u_by_k`)."""
    x = min(max(k / K_MAX, 0.0), 1.0)
    return max(round(u_free_kmh * (1.0 - x ** (L - 1.0)) ** (1.0 / (1.0 - M))), MIN_SPEED_KMH)


@lru_cache(maxsize=256)
def speed_at_max_flow_kmh(u_free_kmh: float) -> int:
    """q_max_u: the speed of the first whole density 0..K_MAX-1 of largest u(k) * k
    (`Link.calc_max_properties`; the lane count scales q and does not move its peak)."""
    best_q, best_u = 0, -1
    for k in range(K_MAX):
        u = speed_at_density_kmh(k, u_free_kmh)
        if u * k > best_q:
            best_q, best_u = u * k, u
    return best_u


def density_from_speed(v_kmh: float, u_free_kmh: float) -> int:
    """k(v) [veh/km/lane], the authors' formula (`Link.calc_k_by_u`)."""
    base = max(1.0 - v_kmh / u_free_kmh, 0.0) if u_free_kmh > 0 else 0.0
    return max(round(K_MAX * (base ** (1.0 - M)) ** (1.0 / (L - 1.0))), 0)


def measured_speed_kmh(speed_ms: np.ndarray) -> np.ndarray:
    """The interval's speeds as the method uses them: whole km/h (half to even, as Python's
    round), at least MIN_SPEED_KMH."""
    return np.maximum(np.round(np.asarray(speed_ms, dtype=float) * KMH_PER_MS), MIN_SPEED_KMH).astype(int)


def distance_in_interval_m(v_kmh: float, interval_s: float, length_m: float) -> float:
    """Metres driven in one interval at v, at most the link (`Link.calc_dist_in_iter_time`)."""
    return min(round(v_kmh * interval_s / KMH_PER_MS), length_m)


def link_cost_veh_min(v_kmh: int, u_free_kmh: float, length_m: float, lanes: int, interval_s: float) -> int:
    """Cost of a loaded link in one interval [veh*min] (`Link.calc_my_iteration_data`).

    Time lost against the speed of maximum flow over the distance driven in the interval,
    times the flow the fundamental diagram gives for the measured speed.
    """
    q_u = speed_at_max_flow_kmh(u_free_kmh)
    flow = v_kmh * density_from_speed(v_kmh, u_free_kmh) * lanes * interval_s / 3600.0
    actual_h = distance_in_interval_m(v_kmh, interval_s, length_m) / 1000.0 / v_kmh
    optimal_h = distance_in_interval_m(q_u, interval_s, length_m) / 1000.0 / q_u
    # only negative for speed_factor > 1 (a link loaded above q_max_u): no gain is priced
    return max(round(flow * (actual_h - optimal_h) * 60.0), 0)


# --- baby steps ---------------------------------------------------------------------------


def step_for_cost(total_veh_min: float) -> int:
    """Baby step [s] for a junction whose phases carry `total_veh_min` (`CostToStepSize`)."""
    for bound, step in zip(STEP_COST_BOUNDS_VEH_MIN, STEP_SIZES_S):
        if total_veh_min < bound:
            return step
    return STEP_SIZES_S[-1]


def _spread(durations: List[int], leftover: int, min_phase: int) -> List[int]:
    """Add `leftover` seconds evenly, the odd ones to the first phases (`calc_wanted_program`).

    A negative leftover (rounding several phases up) takes a second from each of the
    last phases, as the authors' floor division does, but skips phases at the minimum.
    """
    n = len(durations)
    out = list(durations)
    if leftover >= 0:
        base, extra = divmod(leftover, n)
        return [d + base + (1 if i < extra else 0) for i, d in enumerate(out)]
    need = -leftover
    while need > 0:
        last = [i for i in reversed(range(n)) if out[i] > min_phase][:need] or [n - 1]
        for i in last:
            out[i] -= 1
        need -= len(last)
    return out


def baby_step(current: Sequence[float], costs: Sequence[float], budget: float, min_phase: int) -> Tuple[np.ndarray, int]:
    """(new whole-second greens, step) for one junction (`JunctionNode.calc_wanted_program`)."""
    cur = [int(round(d)) for d in current]
    c = [float(x) for x in costs]
    total = sum(c)
    step = step_for_cost(total)
    reduced = [max(d - step, min_phase) for d in cur]
    freed = sum(d - r for d, r in zip(cur, reduced))
    new = [min(round(cp / max(total, 1.0) * freed + r), d + step) for cp, r, d in zip(c, reduced, cur)]
    return np.array(_spread(new, int(round(budget)) - sum(new), min_phase), dtype=float), step


def fit_to_budget(durations: Sequence[float], budget: float, min_phase: int) -> np.ndarray:
    """A program's own greens as whole seconds summing to `budget`, each >= `min_phase`.

    Unchanged when they already fit (the study: 90 s cycle, no yellow); else scaled
    proportionally, the time above the minimum shared like the program shares it.
    """
    d = np.asarray(durations, dtype=float)
    n = len(d)
    total = int(round(budget))
    if d.sum() <= 0 or n * min_phase > total:
        raw = np.full(n, total / n)
    else:
        raw = d * total / d.sum()
        if (raw < min_phase).any():
            above = np.clip(raw - min_phase, 0.0, None)
            raw = min_phase + (total - n * min_phase) * above / above.sum()
    out = np.floor(raw + 1e-9)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: int(total - out.sum())]] += 1
    return out


# --- the network as the method sees it -----------------------------------------------------


def edge_of_lane(lane_id: str) -> str:
    return lane_id.rsplit("_", 1)[0]


def link_of_edge(edge: str, edges: Set[str]) -> str:
    """The link an edge belongs to: the body of the study's split streets, else itself."""
    if HEAD_MARK in edge:
        body = edge.split(HEAD_MARK, 1)[0]
        if body in edges:
            return body
    if edge.endswith(TAIL_SUFFIX) and edge[: -len(TAIL_SUFFIX)] in edges:
        return edge[: -len(TAIL_SUFFIX)]
    return edge


@dataclass
class Topology:
    """Edges (id -> lane ids) and edge-to-edge connections the trees are built on."""

    edge_lanes: Dict[str, List[str]]
    connections: Set[Tuple[str, str]]

    @classmethod
    def from_plans(cls, plans: Mapping[str, PhasePlan]) -> "Topology":
        """Only the signals' own links: trees then stop at unsignalised junctions."""
        lanes: Dict[str, Set[str]] = {}
        conns = set()
        for plan in plans.values():
            for i, o, _ in plan.links:
                lanes.setdefault(edge_of_lane(i), set()).add(i)
                lanes.setdefault(edge_of_lane(o), set()).add(o)
                conns.add((edge_of_lane(i), edge_of_lane(o)))
        return cls({e: sorted(v) for e, v in lanes.items()}, conns)

    @classmethod
    def from_net(cls, net_file: Path, plans: Mapping[str, PhasePlan]) -> "Topology":
        """Every road edge and connection of the network, at every junction."""
        from src.network.netfile import read_net

        info = read_net(Path(net_file))
        roads = set(info.road_edges())
        lanes = {e: [f"{e}_{k}" for k in range(info.edges[e].num_lanes)] for e in roads}
        conns = {(c.from_edge, c.to_edge) for c in info.connections if c.from_edge in roads and c.to_edge in roads}
        own = cls.from_plans(plans)  # signal lanes stay known even on edges closed to cars
        for e, ls in own.edge_lanes.items():
            lanes.setdefault(e, ls)
        return cls(lanes, conns | own.connections)


@dataclass
class _Graph:
    """Links, their measured lanes, heads and connectivity, built once per lane set."""

    link_ids: List[str]
    body_lane: np.ndarray  # indices (into LaneInfo) of the measured lanes of all links ...
    body_link: np.ndarray  # ... and the link each belongs to
    lanes: np.ndarray  # lane count of each link
    length: np.ndarray  # [m]
    free_kmh: np.ndarray  # speed limit [km/h]
    q_max_u: np.ndarray  # speed of maximum flow [km/h]
    downstream: List[List[int]]
    upstream: List[List[int]]
    # link -> [(tls, head lane index, phases of that lane)]
    heads: Dict[int, List[Tuple[str, int, np.ndarray]]]

    @classmethod
    def build(cls, plans: Mapping[str, PhasePlan], lanes: LaneInfo, topology: Topology) -> "_Graph":
        edges = set(topology.edge_lanes)
        measured = {k: [lanes.index[l] for l in topology.edge_lanes.get(k, []) if l in lanes.index]
                    for k in {link_of_edge(e, edges) for e in edges}}
        link_ids = sorted(k for k, ls in measured.items() if ls)  # a link is known by its body's lanes
        index = {k: i for i, k in enumerate(link_ids)}
        body = [np.array(measured[k], dtype=int) for k in link_ids]
        down: List[Set[int]] = [set() for _ in link_ids]
        up: List[Set[int]] = [set() for _ in link_ids]
        for a, b in topology.connections:
            la, lb = index.get(link_of_edge(a, edges)), index.get(link_of_edge(b, edges))
            if la is not None and lb is not None and la != lb:
                down[la].add(lb)
                up[lb].add(la)
        heads: Dict[int, List[Tuple[str, int, np.ndarray]]] = {}
        for tls in sorted(plans):
            for lane, phases in sorted(_head_lane_phases(plans[tls]).items()):
                link = index.get(link_of_edge(edge_of_lane(lane), edges))
                if link is not None and phases and lane in lanes.index:
                    heads.setdefault(link, []).append((tls, lanes.index[lane], np.array(phases, dtype=int)))
        free = np.array([lanes.speed_limits[b].mean() * KMH_PER_MS for b in body])
        return cls(
            link_ids, np.concatenate(body or [np.zeros(0, dtype=int)]), np.repeat(np.arange(len(body)), [len(b) for b in body]),
            np.array([len(b) for b in body], dtype=int), np.array([lanes.lengths[b].mean() for b in body]),
            free, np.array([speed_at_max_flow_kmh(float(u)) for u in free]),
            [sorted(d) for d in down], [sorted(u) for u in up], heads,
        )


def _head_lane_phases(plan: PhasePlan) -> Dict[str, List[int]]:
    """Incoming lane -> the phases giving it priority green 'G' (else its 'g' phases)."""
    priority: Dict[str, Set[int]] = {}
    permissive: Dict[str, Set[int]] = {}
    for i, _, idx in plan.links:
        priority.setdefault(i, set())
        permissive.setdefault(i, set())
        for p, state in enumerate(plan.green_states):
            if state[idx] == "G":
                priority[i].add(p)
            elif state[idx] == "g":
                permissive[i].add(p)
    return {lane: sorted(priority[lane] or permissive[lane]) for lane in priority}


@dataclass
class TreeState:
    """What the method computed in one interval (for inspection and tests)."""

    link_ids: List[str]
    speed_kmh: np.ndarray  # whole km/h, >= MIN_SPEED_KMH
    loaded: np.ndarray
    cost: np.ndarray  # [veh*min]
    trees: Dict[str, List[str]] = field(default_factory=dict)  # trunk -> member links (sorted)
    tree_cost: Dict[str, float] = field(default_factory=dict)  # trunk -> [veh*min]
    phase_cost: Dict[str, np.ndarray] = field(default_factory=dict)  # tls -> [veh*min] per phase
    step: Dict[str, int] = field(default_factory=dict)  # tls -> [s]

    def _at(self, values: np.ndarray, link: str):
        return values[self.link_ids.index(link)]

    def cost_of(self, link: str) -> float:
        return float(self._at(self.cost, link))

    def is_loaded(self, link: str) -> bool:
        return bool(self._at(self.loaded, link))


class TreeMethodController(SignalController):
    """Tree Method: congestion trees priced in vehicle-minutes, green moved in baby steps.

    `speed_factor` (authors' 1.0) scales the congestion threshold q_max_u; `min_phase_s`
    (authors' 10 s) is the shortest green (never below the timing's `min_green`); `net_file`
    gives the whole road network so trees cross unsignalised junctions.
    """

    name = "tree_method"
    sample_interval_s = SAMPLE_INTERVAL_S

    def __init__(self, plans: Mapping[str, PhasePlan], timing: CycleTiming,
                 speed_factor: float = DEFAULT_SPEED_FACTOR, min_phase_s: int = MIN_PHASE_S,
                 net_file: Optional[Path] = None, topology: Optional[Topology] = None, **unused) -> None:
        super().__init__(plans, timing)
        if not speed_factor > 0:
            raise ValueError(f"--tree-method-speed-factor must be positive, got {speed_factor}")
        self.speed_factor = float(speed_factor)
        self.min_phase_s = int(min_phase_s)
        if topology is None:
            topology = Topology.from_net(Path(net_file), self.plans) if net_file else Topology.from_plans(self.plans)
        self.topology = topology
        self._graph: Optional[_Graph] = None
        self._graph_lanes: List[str] = []
        self._current: Dict[str, np.ndarray] = {}
        self.last_state: Optional[TreeState] = None

    @classmethod
    def run_options(cls, params: Any, network: Any) -> Dict[str, Any]:
        return {"speed_factor": params.control.tree_method_speed_factor, "net_file": network.net_file}

    # -- what the runner asks --

    def extra_lanes(self) -> List[str]:
        return sorted({l for ls in self.topology.edge_lanes.values() for l in ls})

    def min_phase(self, num_phases: int) -> int:
        """The shortest green: min_phase_s, at least the timing's minimum, and what fits."""
        fits = int(self.timing.green_budget(num_phases) // max(num_phases, 1))
        return max(int(np.ceil(self.timing.min_green)), min(self.min_phase_s, fits))

    def shortest_green(self, num_phases: int) -> float:
        return float(self.min_phase(num_phases))

    def initial_durations(self) -> Dict[str, np.ndarray]:
        """The program's own greens where the plan has them, else an equal split."""
        out = {}
        for tls, plan in self.plans.items():
            n = plan.num_phases
            own = list(getattr(plan, "green_durations", []) or [])
            start = own if len(own) == n else [1.0] * n
            out[tls] = fit_to_budget(start, self.timing.green_budget(n), self.min_phase(n))
        return out

    def reset(self) -> None:
        self._current = {}
        self.last_state = None

    # -- the method, step by step --

    def _graph_for(self, lanes: LaneInfo) -> _Graph:
        if self._graph is None or self._graph_lanes != list(lanes.lane_ids):
            self._graph = _Graph.build(self.plans, lanes, self.topology)
            self._graph_lanes = list(lanes.lane_ids)
        return self._graph

    def analyse(self, m: CycleMeasurement) -> TreeState:
        """Link speeds, load, costs, trees and phase costs for one interval."""
        g = self._graph_for(m.lanes)
        n_links = len(g.link_ids)
        n = np.clip(np.asarray(m.mean_vehicles, dtype=float), 0.0, None)
        v = np.clip(np.asarray(m.mean_speed, dtype=float), 0.0, None)
        veh = np.bincount(g.body_link, weights=n[g.body_lane], minlength=n_links)
        moving = np.bincount(g.body_link, weights=(n * v)[g.body_lane], minlength=n_links)
        speed_ms = np.where(veh > 0, moving / np.where(veh > 0, veh, 1.0), g.free_kmh / KMH_PER_MS)
        speed = measured_speed_kmh(speed_ms)
        loaded = speed < self.speed_factor * g.q_max_u
        cost = np.zeros(n_links)
        for k in np.flatnonzero(loaded):
            cost[k] = link_cost_veh_min(int(speed[k]), float(g.free_kmh[k]), float(g.length[k]),
                                        int(g.lanes[k]), float(m.cycle_length))
        state = TreeState(g.link_ids, speed, loaded, cost)
        trees = congestion_trees(loaded, g.downstream, g.upstream, set(g.heads))
        weight = tree_weights(trees, n_links)
        phase_cost = {tls: np.zeros(p.num_phases) for tls, p in self.plans.items()}
        for trunk, members in trees.items():
            tree_cost = float(sum(round(weight[e] * cost[e], SHARE_DECIMALS) for e in members))
            state.trees[g.link_ids[trunk]] = sorted(g.link_ids[e] for e in members)
            state.tree_cost[g.link_ids[trunk]] = tree_cost
            heads = g.heads.get(trunk, [])
            if not heads:
                continue
            counts = np.array([n[lane] for _, lane, _ in heads])
            shares = counts / counts.sum() if counts.sum() > 0 else np.full(len(heads), 1.0 / len(heads))
            for (tls, _, phases), share in zip(heads, shares):
                phase_cost[tls][phases] += tree_cost * share / len(phases)
        state.phase_cost = phase_cost
        return state

    def _current_durations(self, tls: str, m: CycleMeasurement) -> np.ndarray:
        """The greens of the cycle that just ended (what the runner applied)."""
        n = self.plans[tls].num_phases
        for cur in (m.last_durations.get(tls), self._current.get(tls)):
            if cur is not None and len(cur) == n and abs(float(np.sum(cur)) - self.timing.green_budget(n)) <= 0.5:
                return np.asarray(cur, dtype=float)
        return self.initial_durations()[tls]

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        state = self.analyse(measurement)
        durations = {}
        for tls, plan in self.plans.items():
            n = plan.num_phases
            current = self._current_durations(tls, measurement)
            new, step = baby_step(current, state.phase_cost[tls], self.timing.green_budget(n), self.min_phase(n))
            state.step[tls] = step
            durations[tls] = new
        self._current = {k: v.copy() for k, v in durations.items()}
        self.last_state = state
        return durations


def congestion_trees(loaded: np.ndarray, downstream: Sequence[Sequence[int]], upstream: Sequence[Sequence[int]],
                     leads_to_signal: Iterable[int]) -> Dict[int, List[int]]:
    """Trunk -> the loaded links of its tree (`IterationTrees.calc_spatial_load_trees`).

    Trunks: loaded links that lead to a signal, and loaded links with no loaded link
    downstream. A tree grows from its trunk upstream through loaded links only.
    """
    signal = set(leads_to_signal)
    trees: Dict[int, List[int]] = {}
    for t in np.flatnonzero(loaded):
        t = int(t)
        if t not in signal and any(loaded[d] for d in downstream[t]):
            continue
        seen, stack = {t}, [t]
        while stack:
            for u in upstream[stack.pop()]:
                if loaded[u] and u not in seen:
                    seen.add(u)
                    stack.append(u)
        trees[t] = sorted(seen)
    return trees


def tree_weights(trees: Mapping[int, Sequence[int]], n_links: int) -> np.ndarray:
    """Each link's share of its cost in every tree it is in: round(1/n, 2) (`fill_my_cost_and_weight`)."""
    count = np.zeros(n_links)
    for members in trees.values():
        count[list(members)] += 1
    return np.array([round(1.0 / c, SHARE_DECIMALS) if c > 0 else 0.0 for c in count])

