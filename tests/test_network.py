"""Network builder tests: real netgenerate/netconvert/sumo on tiny grids."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Tuple

import networkx as nx
import pytest

from src.network import NetworkArtifacts, build_network, read_phase_plans
from src.network.builder import bus_lines_of
from src.sumo_integration.tools import sumo_binary
from src.network.land_use import ZONE_ATTRACTION, ZONE_TYPES
from src.network.netfile import read_net
from src.params import PERIOD_NAMES, NetworkParams, ParameterError

_CACHE: Dict[Tuple, NetworkArtifacts] = {}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build a network once per parameter set within this module."""

    def _build(**kwargs) -> NetworkArtifacts:
        key = tuple(sorted(kwargs.items()))
        if key not in _CACHE:
            out = tmp_path_factory.mktemp("net")
            _CACHE[key] = build_network(NetworkParams(**kwargs), out)
        return _CACHE[key]

    return _build


def _connections(net_file: Path) -> List[Tuple[str, str, str, str, int]]:
    """(from, to, dir, tl, linkIndex) of every connection between normal edges."""
    return [(c.from_edge, c.to_edge, c.direction, c.tl, c.link_index) for c in read_net(net_file).connections]


def _edge_graph(art: NetworkArtifacts) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(art.lane_counts)
    g.add_edges_from((f, t) for f, t, *_ in _connections(art.net_file))
    return g


def _assert_all_reachable(art: NetworkArtifacts) -> None:
    g = _edge_graph(art)
    inner = g.subgraph(art.inner_edges)
    assert nx.is_strongly_connected(inner)
    anchor = art.inner_edges[0]
    for e in art.boundary_in_edges:
        assert nx.has_path(g, e, anchor), e
    for e in art.boundary_out_edges:
        assert nx.has_path(g, anchor, e), e
    # every edge reaches every edge, apart from leaving through an exit / starting at an entry
    for a in art.inner_edges + art.boundary_in_edges:
        reach = nx.descendants(g, a)
        assert set(art.inner_edges + art.boundary_out_edges) - {a} <= reach


def _sumo_loads(net_file: Path) -> str:
    proc = subprocess.run([sumo_binary("sumo"), "-n", str(net_file), "-e", "5", "--no-step-log"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def _tl_phases(net_file: Path, tl: str) -> List[str]:
    import xml.etree.ElementTree as ET

    root = ET.parse(net_file).getroot()
    logic = [t for t in root.iter("tlLogic") if t.get("id") == tl]
    assert len(logic) == 1
    return [p.get("state") for p in logic[0].iter("phase")]


def _dirs(net_file: Path, tl: str) -> Dict[int, Tuple[str, str]]:
    return {idx: (f, d) for f, _t, d, t, idx in _connections(net_file) if t == tl}


# --- junction removal and connectivity ---------------------------------------------------------


def test_random_removal_count_keeps_network_connected(build):
    art = build(grid_dimension=4, block_size_m=120, junctions_to_remove=2, network_seed=5)
    assert len(art.removed_junctions) == 2
    info = read_net(art.net_file)
    interior = {"B1", "B2", "C1", "C2"}
    assert set(art.removed_junctions) <= interior
    for j in art.removed_junctions:
        assert j not in info.junctions
        assert all(j not in (e.from_node, e.to_node) for e in info.edges.values())
    _assert_all_reachable(art)
    assert _sumo_loads(art.net_file).strip() == ""


def test_explicit_removal_of_border_junction_drops_its_fringe(build):
    art = build(grid_dimension=4, block_size_m=120, junctions_to_remove=("B0", "C2"), network_seed=1)
    info = read_net(art.net_file)
    assert art.removed_junctions == ["B0", "C2"]
    assert not {"B0", "C2", "bottom1"} & set(info.junctions)
    assert "bottom0" in info.junctions
    _assert_all_reachable(art)
    assert len(art.boundary_in_edges) == 4 * 4 - 1 == len(art.boundary_out_edges)


def test_junction_with_two_neighbours_left_is_unsignalised(build):
    # without A0 and C0, B0 only links B1 and its fringe node: nothing to signal there
    art = build(grid_dimension=4, block_size_m=100, junctions_to_remove="A0,C0", network_seed=1)
    assert art.removed_junctions == ["A0", "C0"]
    assert "B0" not in art.signalized_junctions
    assert read_net(art.net_file).junctions["B0"][0] == "priority"
    assert len(art.signalized_junctions) == 16 - 3
    _assert_all_reachable(art)
    assert _sumo_loads(art.net_file).strip() == ""


def test_no_u_turns_at_signals_unless_the_streets_need_one(build):
    art = build(grid_dimension=3, block_size_m=100, lane_count=2, signal_programs="partial_opposites")
    info = read_net(art.net_file)
    assert not [c for c in info.connections if c.direction == "t" and c.tl]
    _assert_all_reachable(art)  # every street is reached by going round a block
    # without B1 the streets form a ring: one signal keeps its U-turn so both directions connect
    ring = build(grid_dimension=3, block_size_m=100, lane_count=2, junctions_to_remove=("B1",))
    info = read_net(ring.net_file)
    turning = {info.edges[c.from_edge].to_node for c in info.connections if c.direction == "t" and c.tl}
    assert len(turning) == 1
    _assert_all_reachable(ring)


# --- lanes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
def test_integer_lane_count(build, n):
    art = build(grid_dimension=3, block_size_m=100, lane_count=n)
    info = read_net(art.net_file)
    assert {e.num_lanes for e in info.edges.values()} == {n}
    assert set(art.lane_counts.values()) == {n}
    assert len(art.lane_counts) == len(info.edges)


def test_random_lane_count(build):
    art = build(grid_dimension=4, block_size_m=100, lane_count="random", network_seed=3)
    counts = set(art.lane_counts.values())
    assert counts <= {1, 2, 3} and len(counts) > 1
    partial = build(grid_dimension=4, block_size_m=100, lane_count="random", network_seed=3,
                    signal_programs="partial_opposites")
    assert set(partial.lane_counts.values()) == {2, 3}


def test_realistic_lane_count_follows_land_use(build):
    art = build(grid_dimension=4, block_size_m=150, lane_count="realistic", attractiveness="land_use",
                land_use_block_size_m=25, network_seed=11)
    counts = set(art.lane_counts.values())
    assert len(counts) > 1 and counts <= {1, 2, 3}
    # both directions of a street carry the same land-use demand, so get the same lanes
    assert art.lane_counts["B1C1"] == art.lane_counts["C1B1"]
    # more demand -> never fewer lanes
    total = {e: sum(w["depart"]) + sum(w["arrive"]) for e, w in art.attractiveness.items()}
    ranked = sorted(total, key=total.get)
    lanes = [art.lane_counts[e] for e in ranked]
    assert lanes == sorted(lanes)
    partial = build(grid_dimension=4, block_size_m=150, lane_count="realistic", land_use_block_size_m=25,
                    network_seed=11, signal_programs="partial_opposites")
    assert min(partial.lane_counts.values()) == 2


def test_left_turn_gets_own_lane_with_two_lanes(build):
    art = build(grid_dimension=3, block_size_m=100, lane_count=2)
    lefts = {(c.from_edge, c.from_lane) for c in read_net(art.net_file).connections if c.direction == "l"}
    straights = {(c.from_edge, c.from_lane) for c in read_net(art.net_file).connections if c.direction == "s"}
    assert ("A1B1", 1) in lefts and ("A1B1", 0) in straights
    assert not lefts & straights


def test_surplus_lanes_turn_right_instead_of_merging():
    from src.network.grid import PlainGrid, connections

    # a T: 3 lanes from the south, 2 ahead to the north, 3 to the east, nothing to the west
    nodes = {"J": (0.0, 0.0), "S": (0.0, -100.0), "N": (0.0, 100.0), "E": (100.0, 0.0)}
    edges = {f"{a}{b}": (a, b) for a, b in (("S", "J"), ("J", "S"), ("N", "J"), ("J", "N"), ("E", "J"), ("J", "E"))}
    lanes = {e: 2 for e in edges}
    lanes.update(SJ=3, JE=3)
    grid = PlainGrid(nodes=nodes, node_types={"J": "traffic_light", "S": "dead_end", "N": "dead_end",
                                              "E": "dead_end"},
                     edges=edges, fringe={"S", "N", "E"}, lanes=lanes)
    from_south = {(t, fl, tl) for f, t, fl, tl in connections(grid) if f == "SJ" and t in ("JN", "JE")}
    assert from_south == {("JE", 0, 0), ("JE", 1, 1), ("JN", 1, 0), ("JN", 2, 1)}  # r, r+s, s
    targets = [(t, tl) for t, _fl, tl in from_south]
    assert len(targets) == len(set(targets))  # no two lanes merge into one


# --- signal programs ---------------------------------------------------------------------------


def _check_alternating_yellow(states: List[str]) -> None:
    assert len(states) % 2 == 0
    greens, yellows = states[::2], states[1::2]
    for i, (g, y) in enumerate(zip(greens, yellows)):
        nxt = greens[(i + 1) % len(greens)]
        assert "y" not in g and "y" in y
        for k, (cg, cy, cn) in enumerate(zip(g, y, nxt)):
            if cg in "Gg" and cn not in "Gg":
                assert cy == "y", (i, k)
            elif cg not in "Gg":
                assert cy == "r", (i, k)


def test_opposites_program(build):
    art = build(grid_dimension=3, block_size_m=100, lane_count=2, signal_programs="opposites")
    states = _tl_phases(art.net_file, "B1")
    _check_alternating_yellow(states)
    greens = states[::2]
    assert len(greens) == 2
    dirs = _dirs(art.net_file, "B1")
    axis_of = {"B2B1": "ns", "B0B1": "ns", "A1B1": "ew", "C1B1": "ew"}
    for g in greens:
        served = {axis_of[dirs[i][0]] for i, c in enumerate(g) if c in "Gg"}
        assert len(served) == 1
        for i, c in enumerate(g):
            if c in "Gg":
                assert c == ("g" if dirs[i][1] in "lt" else "G")
    assert _sumo_loads(art.net_file).strip() == ""


def test_incoming_program(build):
    art = build(grid_dimension=3, block_size_m=100, lane_count=2, signal_programs="incoming")
    states = _tl_phases(art.net_file, "B1")
    _check_alternating_yellow(states)
    greens = states[::2]
    assert len(greens) == 4
    dirs = _dirs(art.net_file, "B1")
    served_edges = []
    for g in greens:
        edges = {dirs[i][0] for i, c in enumerate(g) if c in "Gg"}
        assert len(edges) == 1
        (edge,) = edges
        assert all(g[i] == "G" for i, (f, _d) in dirs.items() if f == edge)
        served_edges.append(edge)
    assert sorted(served_edges) == ["A1B1", "B0B1", "B2B1", "C1B1"]
    assert _sumo_loads(art.net_file).strip() == ""


def test_partial_opposites_program(build):
    art = build(grid_dimension=3, block_size_m=100, lane_count=2, signal_programs="partial_opposites")
    states = _tl_phases(art.net_file, "B1")
    _check_alternating_yellow(states)
    greens = states[::2]
    assert len(greens) == 4
    dirs = _dirs(art.net_file, "B1")
    kinds = []
    for g in greens:
        served = [dirs[i] for i, c in enumerate(g) if c in "Gg"]
        turn_kinds = {"left" if d in "lt" else "straight" for _f, d in served}
        assert len(turn_kinds) == 1  # lefts never share a phase with straights
        edges = {f for f, _d in served}
        assert edges in ({"B2B1", "B0B1"}, {"A1B1", "C1B1"})  # both opposing approaches
        kinds.append((frozenset(edges), turn_kinds.pop()))
    assert len(set(kinds)) == 4
    assert _sumo_loads(art.net_file).strip() == ""


def test_partial_opposites_t_junction_stem_gets_one_green(build):
    art = build(grid_dimension=4, block_size_m=100, lane_count=2, junctions_to_remove=("B1",),
                signal_programs="partial_opposites")
    plan = read_phase_plans(art.net_file)["B2"]  # lost its southern side: B3B2 is the stem
    assert plan.num_phases == 3
    served = [set(plan.served_incoming_lanes(p)) for p in range(3)]
    assert {"B3B2_0", "B3B2_1"} in served  # its right, straight-on (none) and left turns together
    for lanes in served:
        edges = {lane.rsplit("_", 1)[0] for lane in lanes}
        assert edges == {"B3B2"} or edges <= {"A2B2", "C2B2"}  # the stem, or the through street
    assert _sumo_loads(art.net_file).strip() == ""


def test_green_durations_fill_cycle(tmp_path):
    art = build_network(NetworkParams(grid_dimension=3, block_size_m=100, signal_programs="incoming"),
                        tmp_path, yellow_time=4, min_green=10, cycle_length=80)
    import xml.etree.ElementTree as ET

    logic = [t for t in ET.parse(art.net_file).getroot().iter("tlLogic") if t.get("id") == "B1"][0]
    durations = [int(float(p.get("duration"))) for p in logic.iter("phase")]
    assert durations[1::2] == [4] * 4
    assert sum(durations) == 80 and min(durations[::2]) >= 10
    art2 = build_network(NetworkParams(grid_dimension=3, block_size_m=100, signal_programs="incoming"),
                         tmp_path / "b", yellow_time=3, min_green=30, cycle_length=60)
    logic = [t for t in ET.parse(art2.net_file).getroot().iter("tlLogic") if t.get("id") == "B1"][0]
    assert [int(float(p.get("duration"))) for p in logic.iter("phase")][::2] == [30] * 4


# --- read_phase_plans --------------------------------------------------------------------------


def test_read_phase_plans_matches_strategy(build):
    inc = build(grid_dimension=3, block_size_m=100, lane_count=2, signal_programs="incoming")
    plans = read_phase_plans(inc.net_file)
    assert sorted(plans) == inc.signalized_junctions
    plan = plans["B1"]
    assert plan.num_phases == 4 and len(plan.yellow_states) == 4
    assert all("y" in y for y in plan.yellow_states)
    for p in range(plan.num_phases):
        lanes = plan.served_incoming_lanes(p)
        edges = {lane.rsplit("_", 1)[0] for lane in lanes}
        assert len(edges) == 1
        (edge,) = edges
        assert lanes == [f"{edge}_0", f"{edge}_1"]
    assert {i for i, _o, _x in plan.links} >= {"A1B1_0", "A1B1_1"}
    assert all(o.rsplit("_", 1)[0].startswith("B1") for _i, o, _x in plan.links)

    part = read_phase_plans(build(grid_dimension=3, block_size_m=100, lane_count=2,
                                  signal_programs="partial_opposites").net_file)["B1"]
    served = [set(part.served_incoming_lanes(p)) for p in range(4)]
    left_lanes = {f"{e}_1" for e in ("A1B1", "B0B1", "B2B1", "C1B1")}
    straight_lanes = {f"{e}_0" for e in ("A1B1", "B0B1", "B2B1", "C1B1")}
    assert sum(s <= left_lanes for s in served) == 2
    assert sum(s <= straight_lanes for s in served) == 2
    assert set().union(*served) == left_lanes | straight_lanes

    opp = read_phase_plans(build(grid_dimension=3, block_size_m=100, lane_count=2,
                                 signal_programs="opposites").net_file)["B1"]
    assert opp.num_phases == 2
    assert set(opp.served_incoming_lanes(0)).isdisjoint(opp.served_incoming_lanes(1))


# --- attractiveness, land use, bus lines -------------------------------------------------------


def test_attractiveness_methods(build):
    lu = build(grid_dimension=3, block_size_m=100, attractiveness="land_use")
    po = build(grid_dimension=3, block_size_m=100, attractiveness="poisson")
    un = build(grid_dimension=3, block_size_m=100, attractiveness="uniform")
    for art in (lu, po, un):
        assert set(art.attractiveness) == set(art.lane_counts)
        for w in art.attractiveness.values():
            assert len(w["depart"]) == len(w["arrive"]) == len(PERIOD_NAMES)
            assert min(w["depart"] + w["arrive"]) > 0
        for e in art.boundary_in_edges + art.boundary_out_edges:
            assert e in art.attractiveness
    assert all(w["depart"] == [1.0] * 6 == w["arrive"] for w in un.attractiveness.values())
    poisson_values = {v for w in po.attractiveness.values() for v in w["depart"]}
    assert len(poisson_values) > 1 and all(v >= 1 and v == int(v) for v in poisson_values)
    assert all(len(set(w["depart"])) == 1 for w in po.attractiveness.values())
    assert any(len(set(w["depart"])) > 1 for w in lu.attractiveness.values())


def test_attraction_table_shape():
    rush, evening_rush = PERIOD_NAMES.index("morning_rush"), PERIOD_NAMES.index("evening_rush")
    assert set(ZONE_ATTRACTION) == set(ZONE_TYPES)
    res, emp = ZONE_ATTRACTION["residential"], ZONE_ATTRACTION["employment"]
    assert res["depart"][rush] > res["arrive"][rush] and emp["arrive"][rush] > emp["depart"][rush]
    assert res["arrive"][evening_rush] > res["depart"][evening_rush]
    assert emp["depart"][evening_rush] > emp["arrive"][evening_rush]


def test_land_use_files(build):
    art = build(grid_dimension=3, block_size_m=100, land_use_block_size_m=20)
    data = json.loads((art.directory / "land_use.json").read_text())
    assert data["cell_size_m"] == 20 and data["rows"] == data["cols"] == 15
    assert len(data["types"]) == 15 and all(len(r) == 15 for r in data["types"])
    assert set(v for r in data["types"] for v in r) <= set(range(len(ZONE_TYPES)))
    assert (art.directory / "land_use.poly.xml").read_text().count("<poly ") > 0


def test_bus_lines_are_connected_routes(build):
    art = build(grid_dimension=5, block_size_m=100, junctions_to_remove=("C2",), network_seed=2)
    pairs = {(f, t) for f, t, *_ in _connections(art.net_file)}
    assert len(art.bus_lines) >= 4
    for line in art.bus_lines:
        assert line[0] in art.boundary_in_edges and line[-1] in art.boundary_out_edges
        assert all((a, b) in pairs for a, b in zip(line, line[1:]))
        assert not any("C2" in e for e in line)


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_identical_files_other_seed_differs(tmp_path):
    params = NetworkParams(grid_dimension=5, block_size_m=100, junctions_to_remove=2, network_seed=7,
                           lane_count="random")
    a = build_network(params, tmp_path / "a")
    build_network(params, tmp_path / "b")
    for name in ("network.net.xml", "network.json", "land_use.json", "land_use.poly.xml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = build_network(NetworkParams(grid_dimension=5, block_size_m=100, junctions_to_remove=2, network_seed=8,
                                    lane_count="random"), tmp_path / "c")
    assert c.removed_junctions != a.removed_junctions
    assert (tmp_path / "c" / "land_use.json").read_bytes() != (tmp_path / "a" / "land_use.json").read_bytes()
    assert c.lane_counts != a.lane_counts
    assert NetworkArtifacts.load(tmp_path / "a").removed_junctions == a.removed_junctions


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, option", [
    (dict(grid_dimension=1), "--grid_dimension"),
    (dict(block_size_m=0), "--block_size_m"),
    (dict(land_use_block_size_m=-5), "--land_use_block_size_m"),
    (dict(grid_dimension=4, junctions_to_remove=("B1", "Z9")), "--junctions_to_remove"),
    (dict(grid_dimension=4, junctions_to_remove=5), "--junctions_to_remove"),
    (dict(grid_dimension=3, junctions_to_remove=("A1", "B0")), "--junctions_to_remove"),
    (dict(lane_count=1, signal_programs="partial_opposites"), "--lane_count"),
    (dict(lane_count="many"), "--lane_count"),
    (dict(signal_programs="roundabout"), "--signal-programs"),
    (dict(attractiveness="gravity"), "--attractiveness"),
    (dict(network_seed=-1), "--network-seed"),
    (dict(net_file=Path("/nonexistent/x.net.xml")), "--net-file"),
])
def test_bad_parameters_raise_before_sumo(tmp_path, kwargs, option):
    out = tmp_path / "out"
    with pytest.raises(ParameterError) as err:
        build_network(NetworkParams(**kwargs), out)
    message = str(err.value)
    assert option in message and "\n" not in message
    assert not out.exists()  # nothing was built


def test_bad_signal_timing(tmp_path):
    with pytest.raises(ParameterError, match="--yellow-time"):
        build_network(NetworkParams(grid_dimension=3), tmp_path, yellow_time=0)


def test_unknown_junction_error_lists_valid_ids(tmp_path):
    with pytest.raises(ParameterError, match="A0"):
        build_network(NetworkParams(grid_dimension=3, junctions_to_remove=("Q7",)), tmp_path)


# --- given net file ------------------------------------------------------------------------------


def test_net_file_keeps_lanes_and_rebuilds_programs(build, tmp_path):
    src = build(grid_dimension=4, block_size_m=120, junctions_to_remove=("B2",), lane_count="random",
                network_seed=4, signal_programs="opposites")
    art = build_network(NetworkParams(net_file=src.net_file, signal_programs="incoming",
                                      attractiveness="land_use"), tmp_path)
    assert art.lane_counts == src.lane_counts
    assert sorted(art.boundary_in_edges) == sorted(src.boundary_in_edges)
    assert sorted(art.boundary_out_edges) == sorted(src.boundary_out_edges)
    assert art.signalized_junctions == src.signalized_junctions
    plans = read_phase_plans(art.net_file)
    assert plans["C1"].num_phases == 4 and plans["B1"].num_phases == 3  # B1 lost its northern side
    assert art.bus_lines == [] and art.bus_lines_on_demand  # drawn only when a scenario asks for buses
    lines = bus_lines_of(art)
    assert lines and all(line[0] in art.boundary_in_edges for line in lines)
    assert _sumo_loads(art.net_file).strip() == ""


# --- speed ---------------------------------------------------------------------------------------


def test_heavy_network_builds_fast(tmp_path):
    params = NetworkParams(network_seed=24208, grid_dimension=6, block_size_m=280, junctions_to_remove=2,
                           lane_count="realistic", attractiveness="land_use", land_use_block_size_m=25,
                           signal_programs="partial_opposites")
    started = time.perf_counter()
    art = build_network(params, tmp_path)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0  # typically ~0.5 s; lenient for loaded machines
    plans = read_phase_plans(art.net_file)
    assert max(p.num_phases for p in plans.values()) == 4
    assert _sumo_loads(art.net_file).strip() == ""
