"""Traffic demand: one SUMO route file per scenario, reproducible from two seeds.

Passenger cars come from `private_traffic_seed`, buses from `public_traffic_seed`, each
through its own `numpy.random.Generator`, so changing one seed leaves the other fleet
untouched and scenarios can vary one kind of traffic at a time.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

import numpy as np

from src.network.artifacts import NetworkArtifacts
from src.network.builder import bus_lines_of
from src.params import (
    BUS_LENGTH_M,
    BUS_MAX_SPEED,
    PASSENGER_LENGTH_M,
    PASSENGER_MAX_SPEED,
    PASSENGER_ROUTE_KINDS,
    PERIOD_NAMES,
    REALTIME_REROUTING_PERIOD_S,
    ROUTING_STRATEGIES,
    ParameterError,
    invalid_value,
    TrafficParams,
    period_of_hour,
)
from src.traffic.departures import largest_remainder_counts, sample_departures, shuffled_labels
from src.traffic.route_file import (
    KIND_PARAM,
    LINE_PARAM,
    ROUTING_PARAM,
    TrafficSummary,
    summarize_route_file,
)
from src.traffic.routing import EdgeGraph, Router, read_net

log = logging.getLogger(__name__)

# Stream ids mixed into the seeds: equal private and public seeds still give unrelated draws.
_PRIVATE_STREAM, _PUBLIC_STREAM = 0, 1
# Attractiveness routing: edge cost = length / sqrt(relative arrival attractiveness),
# the relative value floored so an unattractive street costs at most ~3x its length.
_ATTRACTIVENESS_FLOOR = 0.1
# Insertion attributes: best lane for the route, fastest safe speed (no artificial queue).
_INSERTION = 'departLane="best" departSpeed="max"'
# Trips that start or end inside the network do so at a place along the street (a
# parking spot, a driveway), drawn uniformly over the edge minus a margin at either
# junction: not all at the start of the edge, where inserting cars would block the traffic
# leaving the junction, and not all at its end, where arriving cars would queue for a green
# they never use. A car leaving its place waits there for a gap in the traffic of its lane.
# Trips from or to the fringe enter at the start / leave at the end of their edge.
_TRIP_END_MARGIN = 0.1  # share of the edge length kept free of trip ends at either junction
# Which edge sets a route kind draws origins and destinations from.
_KIND_SETS: Dict[str, Tuple[str, str]] = {
    "in": ("boundary_in", "inner"),
    "out": ("inner", "boundary_out"),
    "inner": ("inner", "inner"),
    "pass": ("boundary_in", "boundary_out"),
}


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


# --- validation -----------------------------------------------------------------------------


def split_vehicle_counts(params: TrafficParams) -> Tuple[int, int]:
    """(passenger, public) counts: public = round(num_vehicles * public% / 100)."""
    public = int(math.floor(params.num_vehicles * params.vehicle_types.get("public", 0.0) / 100.0 + 0.5))
    return params.num_vehicles - public, public


def validate_traffic_params(params: TrafficParams, network: Optional[NetworkArtifacts] = None) -> None:
    """Raise ParameterError (naming the option) when `network` cannot serve the demand.

    `params` checked its own values when it was made; what is left needs the network.
    """
    if network is None:
        return
    n_pass, n_pub = split_vehicle_counts(params)
    if n_pub > 0 and not network.bus_lines and not network.bus_lines_on_demand:
        raise invalid_value("--vehicle_types", params.vehicle_types, "the network has no bus lines; set public 0")
    if n_pass > 0:
        sets = {"boundary_in": network.boundary_in_edges, "boundary_out": network.boundary_out_edges,
                "inner": network.inner_edges}
        for kind, pct in params.passenger_routes.items():
            if pct <= 0:
                continue
            for role in _KIND_SETS[kind]:
                if not sets[role]:
                    raise invalid_value("--passenger-routes", params.passenger_routes,
                                f"route kind {kind!r} needs {role.replace('_', ' ')} edges, the network has none")


# --- demand planning ------------------------------------------------------------------------


def _weights(network: NetworkArtifacts, graph: EdgeGraph, which: str) -> np.ndarray:
    """(periods x edges) origin ("depart") or destination ("arrive") weights."""
    out = np.zeros((len(PERIOD_NAMES), len(graph)))
    if not network.attractiveness:
        out[:] = 1.0  # no attractiveness known: every edge equally likely
        return out
    for i, eid in enumerate(graph.ids):
        value = network.attractiveness.get(eid, {}).get(which)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            out[:, i] = float(value)
        elif len(value) == len(PERIOD_NAMES):
            out[:, i] = [float(v) for v in value]
        elif len(value) >= 1:
            out[:, i] = float(value[0])
    return np.clip(np.nan_to_num(out), 0.0, None)


class _Planner:
    """Origins, destinations and routes of passenger trips on one network."""

    def __init__(self, network: NetworkArtifacts, graph: EdgeGraph) -> None:
        self.graph = graph
        self.depart_w = _weights(network, graph, "depart")
        self.arrive_w = _weights(network, graph, "arrive")
        self.sets: Dict[str, np.ndarray] = {}
        for role, ids in (("boundary_in", network.boundary_in_edges),
                          ("boundary_out", network.boundary_out_edges),
                          ("inner", network.inner_edges)):
            idx = [graph.index[e] for e in ids if e in graph.index]
            if len(idx) < len(ids):
                log.warning("%d %s edges are not passenger edges of the net file; ignored", len(ids) - len(idx), role)
            self.sets[role] = np.array(sorted(set(idx)), dtype=np.int64)
        origins = np.union1d(self.sets["boundary_in"], self.sets["inner"])
        self.by_length = Router(graph, graph.lengths, origins)
        self._by_attractiveness: Dict[int, Router] = {}
        self._valid: Dict[str, np.ndarray] = {}
        # end nodes as codes, and the other direction of each edge's street (-1: one-way)
        codes = {n: k for k, n in enumerate(sorted(set(graph.from_node) | set(graph.to_node)))}
        self._from = np.array([codes[n] for n in graph.from_node], dtype=np.int64)
        self._to = np.array([codes[n] for n in graph.to_node], dtype=np.int64)
        by_ends: Dict[Tuple[str, str], int] = {}
        for i, ends in enumerate(zip(graph.from_node, graph.to_node)):
            by_ends.setdefault(ends, i)
        self.reverse = np.array([by_ends.get((b, a), -1) for a, b in zip(graph.from_node, graph.to_node)],
                                dtype=np.int64)
        self._origin_row = np.full(len(graph), -1, dtype=np.int64)
        for o, r in self.by_length.row_of.items():
            self._origin_row[o] = r

    def valid_pairs(self, kind: str) -> np.ndarray:
        """Boolean (origins x destinations) of a kind: routable, on different streets."""
        if kind not in self._valid:
            o_role, d_role = _KIND_SETS[kind]
            O, D = self.sets[o_role], self.sets[d_role]
            valid = np.zeros((len(O), len(D)), dtype=bool)
            if len(O) and len(D):
                rows = np.array([self.by_length.row_of[int(o)] for o in O], dtype=np.int64)
                valid = np.isfinite(self.by_length.dist[np.ix_(rows, D)])
            # the same edge, or the other side of the same street, is no trip worth driving
            # (and for "pass" leaving by the street it came in on is no pass-through trip)
            valid &= O[:, None] != D[None, :]
            valid &= ~self._same_street(O[:, None], D[None, :])
            self._valid[kind] = valid
        return self._valid[kind]

    def _same_street(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """True where edge b runs between the same two nodes as edge a, the other way."""
        return (self._from[b] == self._to[a]) & (self._to[b] == self._from[a])

    def _route_length(self, origins: np.ndarray, dests: np.ndarray) -> np.ndarray:
        """Length-router cost origin -> destination (inf where none), first edge included."""
        rows = self._origin_row[origins]
        cost = np.full(len(origins), np.inf)
        ok = (rows >= 0) & (origins != dests)
        cost[ok] = self.by_length.dist[rows[ok], dests[ok]] + self.graph.lengths[origins[ok]]
        return cost

    def choose_directions(self, kind: str, origins: np.ndarray, dests: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Each trip leaves and reaches its streets in the direction of the shortest route.

        A trip starts at a place on a street (both directions of a street share its land
        use) and its driver sets off whichever way is shorter; likewise the destination may
        be reached from either side. Choosing the drawn direction blindly sends a share of
        the drivers round a block, or through a U-turn, to get going the right way. Only
        directions inside the kind's edge sets are considered; on ties the drawn edges stay.
        """
        o_role, d_role = _KIND_SETS[kind]
        in_o = np.zeros(len(self.graph), dtype=bool)
        in_o[self.sets[o_role]] = True
        in_d = np.zeros(len(self.graph), dtype=bool)
        in_d[self.sets[d_role]] = True
        best_o, best_d = origins.copy(), dests.copy()
        best = self._route_length(origins, dests)
        rev_o, rev_d = self.reverse[origins], self.reverse[dests]
        for cand_o, cand_d in ((origins, rev_d), (rev_o, dests), (rev_o, rev_d)):
            ok = (cand_o >= 0) & (cand_d >= 0)
            ok[ok] &= in_o[cand_o[ok]] & in_d[cand_d[ok]]
            ok[ok] &= ~self._same_street(cand_o[ok], cand_d[ok])
            cost = np.full(len(origins), np.inf)
            cost[ok] = self._route_length(cand_o[ok], cand_d[ok])
            better = cost < best - 1e-6
            best_o[better], best_d[better], best[better] = cand_o[better], cand_d[better], cost[better]
        return best_o, best_d

    def draw_od(self, kind: str, period: int, m: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """`m` (origin, destination) edge indices of one kind departing in one period."""
        o_role, d_role = _KIND_SETS[kind]
        O, D = self.sets[o_role], self.sets[d_role]
        valid = self.valid_pairs(kind)
        has_dest = valid.any(axis=1)
        if not has_dest.any():
            raise ParameterError(f"--passenger-routes: no route of kind {kind!r} exists on this network")
        dest_w = valid * self.arrive_w[period, D][None, :]
        empty = dest_w.sum(axis=1) <= 0  # destinations all weightless: pick uniformly among valid
        dest_w[empty] = valid[empty]
        origin_w = np.where(has_dest, self.depart_w[period, O], 0.0)
        if origin_w.sum() <= 0:
            origin_w = has_dest.astype(float)
        o_pos = rng.choice(len(O), size=m, p=origin_w / origin_w.sum())
        cum = np.cumsum(dest_w, axis=1)[o_pos]
        x = rng.random(m) * cum[:, -1]
        d_pos = (cum <= x[:, None]).sum(axis=1)
        d_pos = np.minimum(d_pos, len(D) - 1)
        return self.choose_directions(kind, O[o_pos], D[d_pos])

    def attractiveness_router(self, period: int) -> Router:
        """Router preferring attractive streets: cost = length / sqrt(relative arrive weight)."""
        router = self._by_attractiveness.get(period)
        if router is None:
            w = self.arrive_w[period]
            mean = w[w > 0].mean() if (w > 0).any() else 1.0
            rel = np.clip(w / mean, _ATTRACTIVENESS_FLOOR, None) if (w > 0).any() else np.ones_like(w)
            cost = self.graph.lengths / np.sqrt(rel)
            router = Router(self.graph, cost, self.by_length.origins)
            self._by_attractiveness[period] = router
        return router


def _period_index(start_hour: float, departs: np.ndarray) -> np.ndarray:
    names = {name: i for i, name in enumerate(PERIOD_NAMES)}
    return np.array([names[period_of_hour(start_hour + t / 3600.0)] for t in departs.tolist()], dtype=np.int64)


def _device_params(strategy: str) -> str:
    if strategy == "fastest":  # one re-route on insertion, on current travel times
        period = 0
    elif strategy == "realtime":
        period = REALTIME_REROUTING_PERIOD_S
    else:
        return ""
    return ('        <param key="has.rerouting.device" value="true"/>\n'
            f'        <param key="device.rerouting.period" value="{period}"/>\n')


def _trip_end_positions(
    planner: _Planner, origins: np.ndarray, dests: np.ndarray, rng: np.random.Generator
) -> Tuple[List[str], List[str]]:
    """departPos / arrivalPos attributes (or "") of each trip; drawn after everything else."""
    frac = rng.uniform(_TRIP_END_MARGIN, 1.0 - _TRIP_END_MARGIN, size=(2, len(origins)))
    inner = np.zeros(len(planner.graph), dtype=bool)
    inner[planner.sets["inner"]] = True
    lengths = planner.graph.lengths
    depart_pos: List[str] = []
    arrival_pos: List[str] = []
    for i, (o, d) in enumerate(zip(origins.tolist(), dests.tolist())):
        if inner[o]:  # the whole car on the edge
            pos = min(max(frac[0, i] * lengths[o], PASSENGER_LENGTH_M), lengths[o])
            depart_pos.append(f' departPos="{pos:.1f}"')
        else:
            depart_pos.append("")
        arrival_pos.append(f' arrivalPos="{frac[1, i] * lengths[d]:.1f}"' if inner[d] else "")
    return depart_pos, arrival_pos


def _from_begin(departs: np.ndarray, params: TrafficParams) -> List[float]:
    """Departures drawn over the run's length, as simulation times from its begin."""
    return [round(t + params.begin, 1) for t in departs.tolist()]


def _passenger_vehicles(
    params: TrafficParams, planner: _Planner, n: int
) -> Tuple[List[Tuple[float, str]], Dict[str, Dict[str, int]]]:
    """(depart, xml) of each passenger car and its counts; all draws from the private seed."""
    rng = _rng(params.private_traffic_seed, _PRIVATE_STREAM)
    departs = np.sort(sample_departures(params.departure_pattern, n, params.duration, params.start_time_hour, rng))
    strat_counts = largest_remainder_counts(n, params.routing_strategy, ROUTING_STRATEGIES)
    kind_counts = largest_remainder_counts(n, params.passenger_routes, PASSENGER_ROUTE_KINDS)
    strategies = shuffled_labels(strat_counts, ROUTING_STRATEGIES, rng)
    kinds = shuffled_labels(kind_counts, PASSENGER_ROUTE_KINDS, rng)
    periods = _period_index(params.start_time_hour, departs)
    origins = np.zeros(n, dtype=np.int64)
    dests = np.zeros(n, dtype=np.int64)
    for kind in PASSENGER_ROUTE_KINDS:
        for p in range(len(PERIOD_NAMES)):
            sel = np.flatnonzero((kinds == kind) & (periods == p))
            if len(sel):
                origins[sel], dests[sel] = planner.draw_od(kind, p, len(sel), rng)
    depart_pos, arrival_pos = _trip_end_positions(planner, origins, dests, rng)
    device = {s: _device_params(s) for s in ROUTING_STRATEGIES}
    out: List[Tuple[float, str]] = []
    for i, (t, s, k, o, d, p) in enumerate(zip(_from_begin(departs, params), strategies.tolist(), kinds.tolist(),
                                               origins.tolist(), dests.tolist(), periods.tolist())):
        router = planner.attractiveness_router(p) if s == "attractiveness" else planner.by_length
        ends = depart_pos[i] + arrival_pos[i]
        out.append((t, f'    <vehicle id="veh_{i}" type="passenger" depart="{t:.1f}" {_INSERTION}{ends}>\n'
                       f'        <route edges="{router.route_text(o, d)}"/>\n'
                       f'{device[s]}'
                       f'        <param key="{ROUTING_PARAM}" value="{s}"/>\n'
                       f'        <param key="{KIND_PARAM}" value="{k}"/>\n'
                       '    </vehicle>\n'))
    return out, {"routing": strat_counts, "kind": kind_counts}


def _bus_vehicles(
    params: TrafficParams, network: NetworkArtifacts, bus_graph: EdgeGraph, n: int
) -> List[Tuple[float, str]]:
    """(depart, xml) of each bus, spread evenly over the lines; all draws from the public seed."""
    lines = bus_lines_of(network)
    if not lines:
        raise invalid_value("--vehicle_types", params.vehicle_types, "the network has no bus lines; set public 0")
    for k, line in enumerate(lines):
        if not bus_graph.is_connected_route(line):
            raise ValueError(f"bus line {k} of {network.directory} is not a connected route for buses: {line}")
    rng = _rng(params.public_traffic_seed, _PUBLIC_STREAM)
    departs = np.sort(sample_departures(params.departure_pattern, n, params.duration, params.start_time_hour, rng))
    line_of = np.arange(n) % len(lines)
    rng.shuffle(line_of)
    texts = [escape(" ".join(line), {'"': "&quot;"}) for line in lines]
    out: List[Tuple[float, str]] = []
    for i, (t, k) in enumerate(zip(_from_begin(departs, params), line_of.tolist())):
        out.append((t, f'    <vehicle id="bus_{i}" type="public" depart="{t:.1f}" line="line_{k}" {_INSERTION}>\n'
                       f'        <route edges="{texts[k]}"/>\n'
                       f'        <param key="{LINE_PARAM}" value="line_{k}"/>\n'
                       '    </vehicle>\n'))
    return out


def _header(params: TrafficParams) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<!-- traffic demand: {params.num_vehicles} vehicles, private seed {params.private_traffic_seed}, '
            f'public seed {params.public_traffic_seed} -->\n'
            '<routes xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:noNamespaceSchemaLocation="http://sumo.dlr.de/xsd/routes_file.xsd">\n'
            f'    <vType id="passenger" vClass="passenger" length="{PASSENGER_LENGTH_M:.2f}" '
            f'maxSpeed="{PASSENGER_MAX_SPEED:.2f}"/>\n'
            f'    <vType id="public" vClass="bus" length="{BUS_LENGTH_M:.2f}" maxSpeed="{BUS_MAX_SPEED:.2f}" '
            'guiShape="bus"/>\n')


def _copy_route_file(params: TrafficParams, out_file: Path) -> TrafficSummary:
    src = Path(params.route_file)
    if not src.is_file():
        raise invalid_value("--route-file", str(src), "the file does not exist")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != out_file.resolve():
        shutil.copyfile(src, out_file)
    summary = summarize_route_file(out_file)
    times = summary.departures.values()
    if times and not any(params.begin <= t < params.end_time for t in times):
        raise invalid_value("--route-file", str(src), f"no vehicle departs inside the run [{params.begin}, "
                            f"{params.end_time}) s (departures {min(times):g}-{max(times):g} s); "
                            "set --begin/--end-time to the file's time span")
    summary.copied = True
    log.info("route file %s copied to %s: %d vehicles", src, out_file, summary.num_vehicles)
    return summary


def generate_traffic(params: TrafficParams, network: NetworkArtifacts, out_file: Path) -> TrafficSummary:
    """Write the scenario's route file (sorted by depart) and return what it contains."""
    out_file = Path(out_file)
    if params.route_file is not None:
        return _copy_route_file(params, out_file)
    validate_traffic_params(params, network)
    started = time.perf_counter()
    n_pass, n_pub = split_vehicle_counts(params)
    net = read_net(network.net_file)
    entries: List[Tuple[float, int, str]] = []
    counts: Dict[str, Dict[str, int]] = {"routing": {}, "kind": {}}
    if n_pass:
        planner = _Planner(network, EdgeGraph(net, "passenger"))
        cars, counts = _passenger_vehicles(params, planner, n_pass)
        entries.extend((t, 0, xml) for t, xml in cars)
    if n_pub:
        buses = _bus_vehicles(params, network, EdgeGraph(net, "bus"), n_pub)
        entries.extend((t, 1, xml) for t, xml in buses)
    # stable sort: cars before buses at equal times, each fleet keeps its id order
    entries.sort(key=lambda e: (e[0], e[1]))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as fh:
        fh.write(_header(params))
        fh.write("".join(e[2] for e in entries))
        fh.write("</routes>\n")
    departures = {f"veh_{i}": round(t, 1) for i, (t, _) in enumerate(cars)} if n_pass else {}
    if n_pub:
        departures.update({f"bus_{i}": round(t, 1) for i, (t, _) in enumerate(buses)})
    summary = TrafficSummary(
        route_file=out_file,
        num_vehicles=n_pass + n_pub,
        by_vehicle_type={name: c for name, c in (("passenger", n_pass), ("public", n_pub)) if c},
        by_routing_strategy={k: v for k, v in counts["routing"].items() if v},
        by_route_kind={k: v for k, v in counts["kind"].items() if v},
        departures=departures,
    )
    log.info("wrote %s: %d cars, %d buses in %.2f s", out_file, n_pass, n_pub, time.perf_counter() - started)
    return summary
