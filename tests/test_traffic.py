"""Traffic generation: reproducibility, exact mixes, route kinds, departure profiles, and
what SUMO itself does with the routing strategies (real runs on a 3x3 grid)."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import sumolib

from src.network.artifacts import NetworkArtifacts
from src.params import ParameterError, TrafficParams, parse_departure_pattern
from src.traffic import generate_traffic, read_planned_departures, summarize_route_file

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
FRINGE = ("left", "right", "top", "bottom")
ALL_KINDS = {"in": 25.0, "out": 25.0, "inner": 25.0, "pass": 25.0}
ALL_STRATEGIES = {"shortest": 25.0, "fastest": 25.0, "realtime": 25.0, "attractiveness": 25.0}


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def build_grid(directory: Path) -> NetworkArtifacts:
    """3x3 netgenerate grid with fringe edges, varied attractiveness and two bus lines."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_tool("netgenerate"), "--grid", "--grid.number", "3", "--grid.length", "200",
         "--grid.attach-length", "100", "--default.lanenumber", "2",
         "--default-junction-type", "traffic_light", "-o", str(directory / "network.net.xml")],
        check=True, capture_output=True,
    )
    net = sumolib.net.readNet(str(directory / "network.net.xml"))
    b_in, b_out, inner = [], [], []
    for edge in net.getEdges():
        if edge.getFromNode().getID().startswith(FRINGE):
            b_in.append(edge.getID())
        elif edge.getToNode().getID().startswith(FRINGE):
            b_out.append(edge.getID())
        else:
            inner.append(edge.getID())
    attractiveness = {
        eid: {"depart": [1.0 + (i * 7 + p) % 5 for p in range(6)],
              "arrive": [1.0 + (i * 5 + 2 * p) % 7 for p in range(6)]}
        for i, eid in enumerate(sorted(b_in + b_out + inner))
    }
    artifacts = NetworkArtifacts(
        directory=directory,
        boundary_in_edges=sorted(b_in),
        boundary_out_edges=sorted(b_out),
        inner_edges=sorted(inner),
        attractiveness=attractiveness,
        bus_lines=[["left1A1", "A1B1", "B1C1", "C1right1"], ["bottom1B0", "B0B1", "B1B2", "B2top1"]],
    )
    artifacts.save()
    return artifacts


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> NetworkArtifacts:
    return NetworkArtifacts.load(build_grid(tmp_path_factory.mktemp("grid3")).directory)


def params(**kw) -> TrafficParams:
    base = dict(num_vehicles=300, vehicle_types={"passenger": 90.0, "public": 10.0},
                routing_strategy=dict(ALL_STRATEGIES), passenger_routes=dict(ALL_KINDS),
                start_time_hour=8.0, end_time=300.0)
    base.update(kw)
    return TrafficParams(**base)


def read_vehicles(route_file: Path) -> List[Dict]:
    """Every vehicle of a route file as a dict, in file order, plus its raw XML."""
    out = []
    for v in ET.parse(route_file).getroot().iter("vehicle"):
        p = {x.get("key"): x.get("value") for x in v.iter("param")}
        out.append(dict(id=v.get("id"), type=v.get("type"), depart=float(v.get("depart")),
                        edges=v.find("route").get("edges").split(), routing=p.get("traffic.routing"),
                        kind=p.get("traffic.kind"), params=p, xml=ET.tostring(v)))
    return out


def vehicle_xml(route_file: Path, prefix: str) -> Dict[str, bytes]:
    return {v["id"]: v["xml"] for v in read_vehicles(route_file) if v["id"].startswith(prefix)}


# --- reproducibility and seed independence ----------------------------------------------------


def test_same_seeds_give_identical_file(grid, tmp_path):
    a = generate_traffic(params(), grid, tmp_path / "a.rou.xml")
    b = generate_traffic(params(), grid, tmp_path / "b.rou.xml")
    assert (tmp_path / "a.rou.xml").read_bytes() == (tmp_path / "b.rou.xml").read_bytes()
    assert a.departures == b.departures


def test_private_seed_changes_cars_not_buses(grid, tmp_path):
    generate_traffic(params(private_traffic_seed=1), grid, tmp_path / "a.rou.xml")
    generate_traffic(params(private_traffic_seed=7), grid, tmp_path / "b.rou.xml")
    cars_a, cars_b = vehicle_xml(tmp_path / "a.rou.xml", "veh_"), vehicle_xml(tmp_path / "b.rou.xml", "veh_")
    assert len(cars_a) == len(cars_b) == 270
    assert sum(cars_a[k] != cars_b[k] for k in cars_a) > 250
    assert vehicle_xml(tmp_path / "a.rou.xml", "bus_") == vehicle_xml(tmp_path / "b.rou.xml", "bus_")


def test_public_seed_changes_buses_not_cars(grid, tmp_path):
    generate_traffic(params(public_traffic_seed=2), grid, tmp_path / "a.rou.xml")
    generate_traffic(params(public_traffic_seed=9), grid, tmp_path / "b.rou.xml")
    assert vehicle_xml(tmp_path / "a.rou.xml", "veh_") == vehicle_xml(tmp_path / "b.rou.xml", "veh_")
    buses_a, buses_b = vehicle_xml(tmp_path / "a.rou.xml", "bus_"), vehicle_xml(tmp_path / "b.rou.xml", "bus_")
    assert len(buses_a) == len(buses_b) == 30
    assert buses_a != buses_b


# --- counts, route kinds, file format ---------------------------------------------------------


def test_counts_follow_the_mixes_exactly(grid, tmp_path):
    p = params(num_vehicles=203, routing_strategy={"shortest": 50.0, "fastest": 30.0, "realtime": 20.0})
    summary = generate_traffic(p, grid, tmp_path / "r.rou.xml")
    vehicles = read_vehicles(tmp_path / "r.rou.xml")
    # public = round(20.3) = 20; 183 cars split 91.5/54.9/36.6 -> 91/55/37 (largest remainder)
    assert summary.by_vehicle_type == {"passenger": 183, "public": 20}
    assert summary.by_routing_strategy == {"shortest": 91, "fastest": 55, "realtime": 37}
    # 45.75 each: the three leftover vehicles go to the first kinds in order
    assert summary.by_route_kind == {"in": 46, "out": 46, "inner": 46, "pass": 45}
    assert sum(v["type"] == "public" for v in vehicles) == 20
    assert sum(v["routing"] == "fastest" for v in vehicles) == 55
    assert sum(v["kind"] == "pass" for v in vehicles) == 45
    # the file agrees with the in-memory summary and is sorted by departure, inside [0, end)
    on_disk = summarize_route_file(tmp_path / "r.rou.xml")
    assert (on_disk.by_vehicle_type, on_disk.by_routing_strategy, on_disk.by_route_kind) == (
        summary.by_vehicle_type, summary.by_routing_strategy, summary.by_route_kind)
    departs = [v["depart"] for v in vehicles]
    assert departs == sorted(departs)
    assert 0.0 <= min(departs) and max(departs) < 300.0
    assert read_planned_departures(tmp_path / "r.rou.xml") == summary.departures
    assert len(summary.departures) == 203
    assert all(re.fullmatch(r"(veh|bus)_\d+", v["id"]) for v in vehicles)
    # rerouting devices only where the strategy asks for one
    for v in vehicles:
        has_device = v["params"].get("has.rerouting.device") == "true"
        assert has_device == (v["routing"] in ("fastest", "realtime"))
        if v["routing"] == "realtime":
            assert v["params"]["device.rerouting.period"] == "30"
        if v["routing"] == "fastest":
            assert v["params"]["device.rerouting.period"] == "0"


def test_route_kinds_start_and_end_on_their_edge_sets(grid, tmp_path):
    generate_traffic(params(num_vehicles=400), grid, tmp_path / "r.rou.xml")
    net = sumolib.net.readNet(str(grid.net_file))
    b_in, b_out, inner = set(grid.boundary_in_edges), set(grid.boundary_out_edges), set(grid.inner_edges)
    expected = {"in": (b_in, inner), "out": (inner, b_out), "inner": (inner, inner), "pass": (b_in, b_out)}
    seen = set()
    for v in read_vehicles(tmp_path / "r.rou.xml"):
        edges = v["edges"]
        for a, b in zip(edges, edges[1:]):  # every route is drivable
            assert net.getEdge(b) in net.getEdge(a).getOutgoing(), (v["id"], a, b)
        if v["type"] == "public":
            assert edges in grid.bus_lines
            continue
        first, last = expected[v["kind"]]
        assert edges[0] in first and edges[-1] in last, v
        assert edges[0] != edges[-1]
        if v["kind"] == "pass":  # not out again by the street it came in on
            o, d = net.getEdge(edges[0]), net.getEdge(edges[-1])
            assert (d.getFromNode(), d.getToNode()) != (o.getToNode(), o.getFromNode())
        seen.add(v["kind"])
    assert seen == set(ALL_KINDS)


def test_trips_set_off_the_shorter_way_and_end_along_the_street(grid, tmp_path):
    p = params(num_vehicles=600, vehicle_types={"passenger": 100.0}, routing_strategy={"shortest": 100.0})
    generate_traffic(p, grid, tmp_path / "r.rou.xml")
    net = sumolib.net.readNet(str(grid.net_file))
    inner = set(grid.inner_edges)

    def reverse(a: str, b: str) -> bool:
        ea, eb = net.getEdge(a), net.getEdge(b)
        return (ea.getFromNode(), ea.getToNode()) == (eb.getToNode(), eb.getFromNode())

    attrs = {v.get("id"): v.attrib for v in ET.parse(tmp_path / "r.rou.xml").getroot().iter("vehicle")}
    for v in read_vehicles(tmp_path / "r.rou.xml"):
        edges, a = v["edges"], attrs[v["id"]]
        # U-turns are allowed everywhere on this grid, yet no trip starts or ends with one:
        # leaving (or reaching) the street in the other direction is always shorter
        assert not reverse(edges[0], edges[1]) and not reverse(edges[-2], edges[-1]), edges
        assert not reverse(edges[0], edges[-1])  # the other side of the same street is no trip
        # a place along an inner street; the fringe is entered at its start, left at its end
        if edges[0] in inner:
            assert 0.0 < float(a["departPos"]) < net.getEdge(edges[0]).getLength()
        else:
            assert "departPos" not in a
        if edges[-1] in inner:
            assert 0.0 < float(a["arrivalPos"]) < net.getEdge(edges[-1]).getLength()
        else:
            assert "arrivalPos" not in a


def test_attractiveness_routing_prefers_attractive_streets(grid, tmp_path):
    p = params(num_vehicles=1500, vehicle_types={"passenger": 100.0}, passenger_routes={"pass": 100.0},
               routing_strategy={"shortest": 50.0, "attractiveness": 50.0}, end_time=3600.0)
    generate_traffic(p, grid, tmp_path / "r.rou.xml")
    period = 1  # 08:00-09:00 is morning_rush
    weight = {e: a["arrive"][period] for e, a in grid.attractiveness.items()}
    mean_weight: Dict[str, List[float]] = {"shortest": [], "attractiveness": []}
    extra_length: List[float] = []
    differ = 0
    net = sumolib.net.readNet(str(grid.net_file))
    by_od = {}
    for v in read_vehicles(tmp_path / "r.rou.xml"):
        middle = v["edges"][1:-1]
        if middle:
            mean_weight[v["routing"]].append(float(np.mean([weight[e] for e in middle])))
        by_od.setdefault((v["edges"][0], v["edges"][-1]), {})[v["routing"]] = v["edges"]
    for routes in by_od.values():
        if len(routes) == 2:
            length = {k: sum(net.getEdge(e).getLength() for e in r) for k, r in routes.items()}
            extra_length.append(length["attractiveness"] - length["shortest"])
            differ += routes["attractiveness"] != routes["shortest"]
    assert np.mean(mean_weight["attractiveness"]) > np.mean(mean_weight["shortest"]) + 0.2
    assert differ >= 5 and min(extra_length) >= -1e-6  # other streets, never a shorter route


# --- departure patterns -----------------------------------------------------------------------


def test_six_periods_puts_more_departures_in_the_morning_rush(grid, tmp_path):
    p = params(num_vehicles=2000, vehicle_types={"passenger": 100.0}, departure_pattern="six_periods",
               start_time_hour=7.0, end_time=4 * 3600.0)
    summary = generate_traffic(p, grid, tmp_path / "r.rou.xml")
    t = np.array(list(summary.departures.values()))
    assert t.min() >= 0 and t.max() < 4 * 3600
    per_hour = lambda a, b: ((t >= a) & (t < b)).sum() / ((b - a) / 3600.0)  # noqa: E731
    before, rush, after = per_hour(0, 1800), per_hour(1800, 9000), per_hour(9000, 14400)
    # the day profile: 15 %/h in the rush, 5 %/h in the rest of the morning
    assert rush > 2.2 * after and rush > 2.2 * before
    assert 0.6 < before / after < 1.6


def test_custom_window_gets_its_exact_share(grid, tmp_path):
    pattern = parse_departure_pattern("custom:00:10-00:20,50", 3600)
    p = params(num_vehicles=400, vehicle_types={"passenger": 100.0}, departure_pattern=pattern, end_time=3600.0)
    t = np.array(list(generate_traffic(p, grid, tmp_path / "r.rou.xml").departures.values()))
    assert ((t >= 600) & (t < 1200)).sum() == 200
    outside = t[(t < 600) | (t >= 1200)]
    # the other half spreads over the 50 minutes of gaps: 1/5 before, 4/5 after the window
    assert 20 < (outside < 600).sum() < 65 and outside.max() < 3600


def test_uniform_departures_cover_the_run(grid, tmp_path):
    p = params(num_vehicles=1000, vehicle_types={"passenger": 100.0}, end_time=1000.0)
    t = np.array(list(generate_traffic(p, grid, tmp_path / "r.rou.xml").departures.values()))
    counts = np.histogram(t, bins=4, range=(0, 1000))[0]
    assert counts.min() > 200 and t.max() < 1000


# --- SUMO runs ----------------------------------------------------------------------------------


def test_routing_strategies_show_in_sumo_reroutes(grid, tmp_path):
    """SUMO counts in rerouteNo only re-routes that changed the route, so a vehicle whose
    route already was the fastest shows 0 even though its device did route it; periodic
    re-routing (realtime) is what can give 2 or more."""
    p = params(num_vehicles=550, vehicle_types={"passenger": 91.0, "public": 9.0})
    summary = generate_traffic(p, grid, tmp_path / "r.rou.xml")
    tripinfo = tmp_path / "tripinfo.xml"
    subprocess.run(
        [_tool("sumo"), "-n", str(grid.net_file), "-r", str(summary.route_file), "--end", "1500",
         "--tripinfo-output", str(tripinfo), "--tripinfo-output.write-unfinished", "true",
         "--no-step-log", "true", "--seed", "0"],
        check=True, capture_output=True,
    )
    strategy = {v["id"]: v["routing"] or "bus" for v in read_vehicles(summary.route_file)}
    reroutes: Dict[str, List[int]] = {}
    devices: Dict[str, List[bool]] = {}
    delayed_fastest = set()
    for trip in ET.parse(tripinfo).getroot().iter("tripinfo"):
        s = strategy[trip.get("id")]
        reroutes.setdefault(s, []).append(int(trip.get("rerouteNo")))
        devices.setdefault(s, []).append("routing_" in trip.get("devices", ""))
        if s == "fastest" and float(trip.get("departDelay", 0)) >= 60:
            delayed_fastest.add(trip.get("id"))
    assert sum(len(v) for v in reroutes.values()) == 550  # every vehicle inserted and finished
    mean = {s: statistics.mean(v) for s, v in reroutes.items()}
    assert mean["shortest"] == mean["attractiveness"] == mean["bus"] == 0
    assert not any(devices["shortest"] + devices["attractiveness"] + devices["bus"])
    assert all(devices["fastest"]) and all(devices["realtime"])
    assert mean["fastest"] > 0 and mean["realtime"] > 0
    # fastest: one routing at insertion (repeated only while insertion waits >= 60 s)
    if not delayed_fastest:
        assert max(reroutes["fastest"]) <= 1
    assert max(reroutes["realtime"]) >= 2  # only periodic re-routing can do that
    # more vehicles re-routed twice or more: realtime = insertion re-route + periodic ones
    # (trips set off in the direction of their shortest route, so on this lightly loaded
    # grid a re-route rarely changes anything and the means of the two are close)
    assert sum(r >= 2 for r in reroutes["realtime"]) > sum(r >= 2 for r in reroutes["fastest"])


# --- user route file and bad values -------------------------------------------------------------


def test_route_file_option_copies_and_summarises(grid, tmp_path):
    generate_traffic(params(), grid, tmp_path / "mine.rou.xml")
    copied = generate_traffic(params(route_file=tmp_path / "mine.rou.xml"), grid, tmp_path / "out" / "r.rou.xml")
    assert copied.copied
    assert (tmp_path / "out" / "r.rou.xml").read_bytes() == (tmp_path / "mine.rou.xml").read_bytes()
    assert copied.by_vehicle_type == {"passenger": 270, "public": 30}
    assert len(copied.departures) == 300
    with pytest.raises(ParameterError, match="--route-file"):
        generate_traffic(params(route_file=tmp_path / "missing.rou.xml"), grid, tmp_path / "x.rou.xml")


def test_planned_departures_of_foreign_files_with_flows(tmp_path):
    path = tmp_path / "f.rou.xml"
    path.write_text(
        '<routes><vType id="t"/>'
        '<trip id="a" type="t" depart="5.5" from="x" to="y"/>'
        '<flow id="f" type="t" begin="0" end="100" period="25" from="x" to="y"/>'
        '<vehicle id="b" depart="00:01:00"><route edges="x y"/></vehicle></routes>')
    assert read_planned_departures(path) == {"a": 5.5, "b": 60.0, "f.0": 0.0, "f.1": 25.0, "f.2": 50.0, "f.3": 75.0}


@pytest.mark.parametrize("change, option", [
    (dict(num_vehicles=0), "--num_vehicles"),
    (dict(end_time=0), "--end-time"),
    (dict(start_time_hour=24.0), "--start_time_hour"),
    (dict(private_traffic_seed=-1), "--private-traffic-seed"),
    (dict(routing_strategy={"shortest": 60.0}), "--routing_strategy"),
    (dict(passenger_routes={"sideways": 100.0}), "--passenger-routes"),
    (dict(vehicle_types={"passenger": 50.0, "public": 40.0}), "--vehicle_types"),
    (dict(departure_pattern="weekly"), "--departure_pattern"),
])
def test_bad_values_name_the_option(grid, tmp_path, change, option):
    with pytest.raises(ParameterError, match=re.escape(option)):
        generate_traffic(params(**change), grid, tmp_path / "r.rou.xml")
    assert not (tmp_path / "r.rou.xml").exists()


def test_network_that_cannot_serve_the_demand(grid, tmp_path):
    no_buses = replace(grid, bus_lines=[])
    with pytest.raises(ParameterError, match="--vehicle_types"):
        generate_traffic(params(), no_buses, tmp_path / "r.rou.xml")
    no_fringe = replace(grid, boundary_in_edges=[], boundary_out_edges=[], bus_lines=[])
    car_only = dict(vehicle_types={"passenger": 100.0})
    with pytest.raises(ParameterError, match="--passenger-routes"):
        generate_traffic(params(**car_only, passenger_routes={"in": 50.0, "inner": 50.0}), no_fringe,
                         tmp_path / "r.rou.xml")
    # inner-only demand still works without fringe edges
    summary = generate_traffic(params(**car_only, passenger_routes={"inner": 100.0}), no_fringe,
                               tmp_path / "r.rou.xml")
    assert summary.by_route_kind == {"inner": 300}
