"""Route files as scenarios: found by path, list or glob; checked against the network and the
episode before anything runs (one line naming scenario and file); fingerprinted; rotated per
episode in a fixed order. On a real two-junction network with hand-written programs."""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from route_fixtures import COUNT_A, COUNT_B, CYCLE, END_TIME, GREENS, OFFSET_B, SPACING_A, SPACING_B, YELLOW, \
    build_route_fixture, write_bad_route_files
from src.network import build_network, read_phase_plans
from src.params import NetworkParams, ParameterError
from src.sumo_integration.tools import sumo_binary
from src.traffic import route_files as rf
from src.traffic.route_files import RouteFileError, file_checksum, read_scenario_sumocfg, resolve_route_files, \
    route_file_for_episode, validate_route_file


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_route_fixture(tmp_path_factory.mktemp("route_fixture"))


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --- the fixture is real -------------------------------------------------------------------------


def test_fixture_network_has_the_hand_written_programs(fx):
    plans = read_phase_plans(fx.net_file)
    assert sorted(plans) == ["J1", "J2"]
    for tls, plan in plans.items():
        assert plan.num_phases == 4 and plan.program_type == "static" and plan.cycle_s == CYCLE
        assert plan.green_durations == [float(g) for g in GREENS[tls]]
        assert all(t == [(float(YELLOW), t[0][1])] for t in plan.transitions)
        # through phases carry a permitted left (g), left phases only protected lefts (G)
        assert "g" in plan.green_states[0] and set(plan.green_states[1]) == {"G", "r"}
    assert fx.net_file.read_text().count("<tlLogic") == 2  # no second (default) program beside ours


def test_each_route_file_runs_in_sumo_with_its_own_vehicles(fx, tmp_path):
    for routes in fx.route_files:
        trips = tmp_path / f"{routes.stem}.tripinfo.xml"
        proc = subprocess.run([sumo_binary("sumo"), "-n", str(fx.net_file), "-r", str(routes), "--end", str(END_TIME),
                               "--no-step-log", "--tripinfo-output", str(trips)], capture_output=True, text=True)
        assert proc.returncode == 0 and "Warning" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
        arrived = sorted(t.get("id") for t in ET.parse(trips).getroot().iter("tripinfo"))
        assert arrived == sorted(fx.vehicle_ids[routes.name])  # every vehicle of this file, no other


# --- the network built for route files ----------------------------------------------------------


def test_external_network_without_synthetic_demand(fx, tmp_path):
    art = build_network(NetworkParams(net_file=fx.net_file), tmp_path / "net", synthetic_demand=False)
    assert art.net_file.read_bytes() == fx.net_file.read_bytes()  # programs kept byte for byte
    assert not (tmp_path / "net" / "land_use.json").exists() and not (tmp_path / "net" / "land_use.poly.xml").exists()
    saved = json.loads((tmp_path / "net" / "network.json").read_text())
    assert saved["attractiveness"] == {} and saved["bus_lines"] == [] and saved["bus_lines_on_demand"] is False
    assert art.signalized_junctions == ["J1", "J2"]
    with pytest.raises(ParameterError, match="--attractiveness.*no land use"):
        build_network(NetworkParams(net_file=fx.net_file, attractiveness="land_use"), tmp_path / "x",
                      synthetic_demand=False)
    with pytest.raises(ValueError, match="given net file"):
        build_network(NetworkParams(grid_dimension=3), tmp_path / "grid", synthetic_demand=False)


def test_external_network_default_and_with_synthetic_demand(fx, tmp_path):
    default = build_network(NetworkParams(net_file=fx.net_file), tmp_path / "default")
    assert not (tmp_path / "default" / "land_use.json").exists()
    assert default.bus_lines == [] and default.bus_lines_on_demand  # drawn only if a scenario asks for buses
    asked = build_network(NetworkParams(net_file=fx.net_file), tmp_path / "asked", synthetic_demand=True)
    assert (tmp_path / "asked" / "land_use.json").exists()
    assert len(asked.bus_lines) == 4 and not asked.bus_lines_on_demand  # four entries, each to its farthest exit
    assert all(line[0] in asked.boundary_in_edges and line[-1] in asked.boundary_out_edges for line in asked.bus_lines)
    assert len({w for weights in asked.attractiveness.values() for w in weights["depart"]}) > 1  # land use, not uniform


# --- finding the files ---------------------------------------------------------------------------


def test_route_files_by_path_list_and_glob(fx):
    a, b = fx.route_files
    folder = fx.folder
    assert resolve_route_files("routes_a.rou.xml", folder, "s") == [a.resolve()]
    assert resolve_route_files(str(b), "/nonexistent", "s") == [b.resolve()]  # absolute: base unused
    assert resolve_route_files(["routes_b.rou.xml", "routes_a.rou.xml"], folder, "s") == [a.resolve(), b.resolve()]
    assert resolve_route_files("routes_*.rou.xml", folder, "s") == [a.resolve(), b.resolve()]
    assert resolve_route_files(["*.rou.xml", "routes_a.rou.xml"], folder, "s") == [a.resolve(), b.resolve()]
    assert resolve_route_files(Path("routes_?.rou.xml"), folder, "s") == [a.resolve(), b.resolve()]


def test_numbered_files_rotate_in_numeric_order(tmp_path):
    for k in (10, 2, 1):
        (tmp_path / f"map_{k}.rou.xml").write_text("<routes/>")
    names = [p.name for p in resolve_route_files("map_*.rou.xml", tmp_path, "s")]
    assert names == ["map_1.rou.xml", "map_2.rou.xml", "map_10.rou.xml"]


@pytest.mark.parametrize("value, expected", [
    ("maps/*.rou.xml", r"scenario 'rush': route_files pattern 'maps/\*.rou.xml' matches no file \(relative to "),
    (["routes_a.rou.xml", "routes_c.rou.xml"], r"scenario 'rush': route file 'routes_c.rou.xml' does not exist"),
    (".", r"scenario 'rush': route file '.' is a folder, not a file"),
    ([], r"scenario 'rush': route_files is an empty list"),
    ([3], r"scenario 'rush': route_files entry 3 is not a path"),
])
def test_route_files_that_match_nothing_are_one_line(fx, value, expected):
    with pytest.raises(RouteFileError) as err:
        resolve_route_files(value, fx.folder, "rush")
    assert re.match(expected, _one_line(err))


# --- checking the files --------------------------------------------------------------------------


def test_valid_files_give_their_record(fx):
    a, b = fx.route_files
    ra = validate_route_file(a, fx.net_file, END_TIME, scenario="s")
    assert (ra.vehicles, ra.first_departure, ra.last_departure) == (COUNT_A, 0.0, (COUNT_A - 1) * SPACING_A)
    assert ra.size == a.stat().st_size and ra.path == str(a.resolve()) and ra.persons == 0
    rb = validate_route_file(b, fx.net_file, END_TIME)
    assert (rb.vehicles, rb.first_departure, rb.last_departure) == (COUNT_B, OFFSET_B, OFFSET_B + (COUNT_B - 1) * SPACING_B)
    assert ra.sha256 != rb.sha256
    assert set(ra.as_dict()) == {"path", "sha256", "size", "vehicles", "first_departure", "last_departure", "persons"}
    assert [r.vehicles for r in rf.validate_route_files(fx.route_files, fx.net_file, END_TIME)] == [COUNT_A, COUNT_B]


def test_checksums_match_sha256sum(fx):
    out = subprocess.run(["sha256sum", *map(str, fx.route_files), str(fx.net_file)], capture_output=True, text=True,
                         check=True).stdout
    expected = {Path(line.split()[1]).name: line.split()[0] for line in out.splitlines()}
    for path in (*fx.route_files, fx.net_file):
        assert file_checksum(path) == expected[path.name]
    assert rf.route_file_record(fx.route_files[1]).sha256 == expected["routes_b.rou.xml"]


@pytest.mark.parametrize("kind, expected", [
    ("unknown_edge", r"edge 'J2_nowhere' \(vehicle 'x0'\) is not in the network .*corridor\.net\.xml$"),
    ("empty", r"no vehicle, trip, flow or person: nothing to simulate$"),
    ("not_xml", r"not XML \(syntax error: line 1, column 0\)$"),
    ("late", r"2 of 5 departures at or after the episode end 300 s \(first: trip 'x3' at 300 s, last at 400 s\)"),
])
def test_bad_route_files_are_one_line_naming_scenario_and_file(fx, tmp_path, kind, expected):
    bad = write_bad_route_files(tmp_path)[kind]
    with pytest.raises(RouteFileError) as err:
        validate_route_file(bad, fx.net_file, END_TIME, scenario="rush")
    text = _one_line(err)
    assert text.startswith(f"scenario 'rush': route file {bad}: ")
    assert re.search(expected, text), text


def test_departure_rule(fx, tmp_path):
    late = write_bad_route_files(tmp_path)["late"]
    # cutting a longer file on purpose: allowed, the record still counts every vehicle
    record = validate_route_file(late, fx.net_file, END_TIME, allow_late=True)
    assert (record.vehicles, record.last_departure) == (5, 400.0)
    # a file in another time base (7:00-8:00) departs entirely after the episode: refused even so
    shifted = tmp_path / "shifted.rou.xml"
    shifted.write_text('<routes>\n    <trip id="m0" depart="07:00:00" from="W_J1" to="J2_E"/>\n'
                       '    <trip id="m1" depart="25260" from="W_J1" to="J2_E"/>\n</routes>\n')
    with pytest.raises(RouteFileError) as err:
        validate_route_file(shifted, fx.net_file, 3600, allow_late=True)
    assert "no vehicle departs inside the episode [0 s, 3600 s) (departures 25200 s to 25260 s)" in _one_line(err)
    # run from its time of day: accepted
    assert validate_route_file(shifted, fx.net_file, 25200 + 3600, begin=25200).vehicles == 2
    # departures before the begin: refused, unless cutting on purpose (SUMO does not insert them)
    with pytest.raises(RouteFileError, match=r"1 departure before the episode begin 100 s \(first: trip 'x0' at 0 s\)"):
        validate_route_file(late, fx.net_file, 1000, begin=100)
    assert validate_route_file(late, fx.net_file, END_TIME, begin=100, allow_late=True).vehicles == 5
    assert validate_route_file(late, fx.net_file, None).vehicles == 5  # no end: no end check


def test_flows_persons_stops_and_other_refusals(fx, tmp_path):
    def check(name: str, body: str, end=END_TIME, **kwargs):
        path = tmp_path / f"{name}.rou.xml"
        path.write_text(f"<routes>\n{body}\n</routes>\n")
        return validate_route_file(path, fx.net_file, end, **kwargs)

    record = check("flow", '<flow id="f" begin="0" end="100" period="10" from="W_J1" to="J2_E"/>')
    assert (record.vehicles, record.first_departure, record.last_departure) == (10, 0.0, 90.0)
    with pytest.raises(RouteFileError, match=r"1 of 2 departures at or after .* \(first: flow 'f' at 400 s"):
        check("flow_late", '<flow id="f" begin="0" end="400" probability="0.1" from="W_J1" to="J2_E"/>')
    assert check("flow_open", '<flow id="f" begin="10" vehsPerHour="600" from="W_J1" to="J2_E"/>').first_departure == 10
    with pytest.raises(RouteFileError, match=r"edge 'nowhere' \(person 'p0'\) is not in the network"):
        check("walk", '<person id="p0" depart="5"><walk edges="W_J1 nowhere"/></person>')
    with pytest.raises(RouteFileError, match=r"edge 'gone' \(vehicle 'v0'\)"):
        check("stop", '<vehicle id="v0" depart="1"><route edges="W_J1 J1_J2"/><stop lane="gone_0" duration="5"/>'
                      '</vehicle>')
    with pytest.raises(RouteFileError, match=r"edge 'J9_J1' \(route 'r'\) is not in the network .*; 1 more unknown edge$"):
        check("route", '<route id="r" edges="J9_J1 J1_J2 J2_J9"/>\n<vehicle id="v" route="r" depart="0"/>')
    with pytest.raises(RouteFileError, match=r"junction 'Z' \(trip 't'\)"):
        check("junction", '<trip id="t" depart="0" fromJunction="W" toJunction="Z"/>')
    with pytest.raises(RouteFileError, match=r"vehicle 'v' has depart 'soon', which is not a time"):
        check("depart", '<vehicle id="v" depart="soon"><route edges="W_J1"/></vehicle>')
    assert check("triggered", '<vehicle id="v" depart="triggered"><route edges="W_J1"/></vehicle>').vehicles == 1
    for name, body, expected in (("none", None, "does not exist"), ("zero", "", r"empty file \(0 bytes\)")):
        path = tmp_path / f"{name}.rou.xml"
        if body is not None:
            path.write_text(body)
        with pytest.raises(RouteFileError, match=f"route file {path}: {expected}"):
            validate_route_file(path, fx.net_file, END_TIME)
    with pytest.raises(RouteFileError, match=r"root element <net>, not <routes>: not a route file"):
        validate_route_file(fx.net_file, fx.net_file, END_TIME)
    with pytest.raises(ParameterError, match=r"network .*routes_a.rou.xml: not a readable SUMO net file"):
        validate_route_file(fx.route_files[1], fx.route_files[0], END_TIME)


def test_network_edges_are_read_once(fx):
    rf.network_ids(fx.net_file)
    before = rf._net_ids.cache_info()
    edges, junctions = rf.network_ids(fx.net_file)
    after = rf._net_ids.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    assert "W_J1" in edges and "J1_W" in edges and not any(e.startswith(":") for e in edges)
    assert {"J1", "J2", "W", "E"} <= junctions


def test_an_hour_of_demand_validates_fast(fx, tmp_path):
    routes = [["W_J1", "J1_J2", "J2_E"], ["E_J2", "J2_J1", "J1_W"], ["N1_J1", "J1_S1"], ["S2_J2", "J2_N2"]]
    lines = ["<routes>"] + [
        f'    <vehicle id="h{k}" depart="{k * 0.5:.1f}">\n        <route edges="{" ".join(routes[k % 4])}"/>\n'
        '    </vehicle>' for k in range(7200)]
    path = tmp_path / "hour.rou.xml"
    path.write_text("\n".join(lines + ["</routes>"]) + "\n")
    rf.network_ids(fx.net_file)
    started = time.perf_counter()
    record = validate_route_file(path, fx.net_file, 3600)
    elapsed = time.perf_counter() - started
    assert (record.vehicles, record.first_departure, record.last_departure) == (7200, 0.0, 3599.5)
    assert elapsed < 3.0  # about 0.2 s; lenient for a loaded machine


# --- rotation ------------------------------------------------------------------------------------


def rotation(files, episodes: int, order: str = "sequential", seed: int = 0) -> list:
    """The files of episodes 0 .. episodes-1, as the envs pick them."""
    return [route_file_for_episode(files, k, order, seed) for k in range(episodes)]


def test_sequential_rotation(fx):
    a, b = fx.route_files
    assert rotation(fx.route_files, 5) == [a, b, a, b, a]
    assert route_file_for_episode([a], 7, "random", seed=3) == a


def test_random_rotation_is_seeded_balanced_and_stateless(tmp_path):
    files = [tmp_path / f"map_{k}.rou.xml" for k in range(1, 4)]
    order = rotation(files, 30, "random", seed=5)
    assert order == rotation(files, 30, "random", seed=5)  # same seed, same episodes
    for block in range(10):  # every block of 3 episodes uses each file once
        assert sorted(order[3 * block:3 * block + 3]) == sorted(files)
    assert order != rotation(files, 30, "sequential")
    assert order != rotation(files, 30, "random", seed=6)
    assert all(route_file_for_episode(files, k, "random", seed=5) == order[k] for k in (29, 4, 17))  # any order of calls
    with pytest.raises(ParameterError, match="route file order 'shuffle'; allowed: sequential, random"):
        route_file_for_episode(files, 0, "shuffle")
    with pytest.raises(ValueError, match="episode must be an integer >= 0"):
        route_file_for_episode(files, -1)


# --- a study folder as a scenario ----------------------------------------------------------------


def test_study_sumocfg_as_a_scenario(fx):
    study = read_scenario_sumocfg("study.sumocfg", fx.folder, "study")
    assert study.net_file == fx.net_file.resolve() and study.route_files == (fx.route_files[0].resolve(),)
    assert (study.begin, study.end) == (0.0, 300.0)  # end written 0:05:00
    assert ("ignore-route-errors", "true") in study.options and ("time-to-teleport", "120") in study.options
    assert all(name != "no-step-log" for name, _ in study.options)  # reports are the run's own


def test_study_sumocfg_errors_name_the_scenario(fx, tmp_path):
    with pytest.raises(ParameterError) as err:
        read_scenario_sumocfg("missing.sumocfg", fx.folder, "s1")
    assert re.match(r"scenario 's1': sumocfg: file '.*missing.sumocfg' does not exist$", _one_line(err))
    bad = tmp_path / "bad.sumocfg"
    bad.write_text(fx.sumocfg.read_text().replace('value="0:05:00"', 'value="soon"')
                   .replace(f'value="{fx.net_file.name}"', f'value="{fx.net_file}"')
                   .replace('value="routes_a.rou.xml"', f'value="{fx.route_files[0]}"'))
    with pytest.raises(ParameterError) as err:
        read_scenario_sumocfg("bad.sumocfg", tmp_path, "s1")
    assert "sets end 'soon', which is not a time in seconds or H:MM:SS" in _one_line(err)
