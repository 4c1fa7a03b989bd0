"""The simulation CLI end to end: real SUMO on a tiny grid, metrics from trip records."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, python, tiny_scenario
from src.argv import parse_simulation_params
from src.control.actuator import CycleTiming, proportions_to_durations
from src.metrics import compute_trip_metrics
from src.orchestration.simulation import run_simulation
from src.params import ParameterError


def run_cli(args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([python(), "-m", "src.cli", *shlex.split(args), "--quiet"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# --- metrics --------------------------------------------------------------------------------


def test_metrics_count_unfinished_and_never_inserted(tmp_path):
    tripinfo = tmp_path / "tripinfo.xml"
    tripinfo.write_text("""<tripinfos>
  <tripinfo id="a" depart="10.00" arrival="110.00" duration="100.00" waitingTime="20.00" timeLoss="30.00" rerouteNo="2"/>
  <tripinfo id="b" depart="20.00" arrival="220.00" duration="200.00" waitingTime="40.00" timeLoss="50.00" rerouteNo="0"/>
  <tripinfo id="c" depart="350.00" arrival="-1" duration="250.00" waitingTime="100.00" timeLoss="120.00" rerouteNo="1"/>
</tripinfos>""")
    planned = {"a": 10.0, "b": 0.0, "c": 300.0, "d": 500.0, "late": 700.0}
    m = compute_trip_metrics(tripinfo, planned, end_time=600.0)
    assert m["vehicles_planned"] == 4  # "late" departs after the end
    assert m["vehicles_arrived"] == 2 and m["vehicles_inserted"] == 3
    assert m["mean_travel_time"] == pytest.approx(150.0)
    assert m["mean_waiting_time"] == pytest.approx(30.0)
    assert m["mean_time_loss"] == pytest.approx(40.0)
    # a: 100; b: 200 + 20 insertion delay; c: running since planned 300 -> 300; d: never inserted -> 100
    assert m["mean_travel_time_all"] == pytest.approx((100 + 220 + 300 + 100) / 4)
    # waiting: a 20; b 40 + 20; c 100 + 50 delay; d 100
    assert m["mean_waiting_time_all"] == pytest.approx((20 + 60 + 150 + 100) / 4)
    assert m["completion_rate"] == pytest.approx(0.5)
    assert m["throughput_per_hour"] == pytest.approx(2 / (600 / 3600))
    assert m["mean_reroutes"] == pytest.approx(1.0)


def test_actuator_keeps_cycle_and_minimum_green():
    timing = CycleTiming(cycle_length=90, yellow_time=3, min_green=5)
    for shares in ([1, 1, 1, 1], [10, 0, 0, 0], [0.2, 0.3, 0.5], [0, 0]):
        d = proportions_to_durations(shares, timing)
        assert d.sum() == 90 - 3 * len(shares)
        assert d.min() >= 5
        assert np.all(d == np.round(d))
    assert list(proportions_to_durations([10, 0, 0, 0], timing)) == [63, 5, 5, 5]


# --- the CLI on a real simulation ------------------------------------------------------------


@pytest.fixture(scope="module")
def controller_runs(tmp_path_factory):
    """One tiny heavy-ish scenario under every built-in controller."""
    root = tmp_path_factory.mktemp("controllers")
    scenario = tiny_scenario(num_vehicles=500, seed=5, routing="shortest 70 realtime 30", end_time=900)
    results = {}
    for controller in ("fixed", "actuated", "max_pressure", "tree_method"):
        out = root / controller
        proc = run_cli(f"{scenario} --traffic_control {controller} --output-dir {out}")
        assert proc.returncode == 0, proc.stderr
        results[controller] = json.loads((out / "metrics.json").read_text())
    return results


def test_cli_writes_metrics_from_trip_records(controller_runs):
    for controller, m in controller_runs.items():
        assert m["controller"] == controller
        assert m["vehicles_planned"] == 500
        assert 0 < m["vehicles_arrived"] <= 500
        assert m["mean_travel_time"] > 0 and m["mean_travel_time_all"] > 0
        assert m["completion_rate"] == pytest.approx(m["vehicles_arrived"] / 500)


def test_controllers_make_different_decisions(controller_runs):
    travel_times = {c: round(m["mean_travel_time_all"], 3) for c, m in controller_runs.items()}
    assert len(set(travel_times.values())) == len(travel_times), travel_times


def test_same_scenario_same_numbers(controller_runs, tmp_path):
    scenario = tiny_scenario(num_vehicles=500, seed=5, routing="shortest 70 realtime 30", end_time=900)
    proc = run_cli(f"{scenario} --traffic_control max_pressure --output-dir {tmp_path / 'again'}")
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again == controller_runs["max_pressure"]


def test_routing_mix_shows_in_reroutes(tmp_path):
    shortest = run_simulation(parse_simulation_params(
        tiny_scenario(num_vehicles=300, routing="shortest 100", extra=f"--output-dir {tmp_path / 's'}")), progress=False)
    realtime = run_simulation(parse_simulation_params(
        tiny_scenario(num_vehicles=300, routing="realtime 100", extra=f"--output-dir {tmp_path / 'r'}")), progress=False)
    assert shortest.metrics["mean_reroutes"] == 0
    assert realtime.metrics["mean_reroutes"] > 0


def test_given_network_and_route_files_replace_generated_ones(controller_runs, tmp_path):
    source = tmp_path / "source"
    run_simulation(parse_simulation_params(tiny_scenario(num_vehicles=150, extra=f"--output-dir {source}")), progress=False)
    net, routes = source / "network" / "network.net.xml", source / "routes.rou.xml"
    proc = run_cli(f"--net-file {net} --route-file {routes} --end-time 600 --traffic_control max_pressure "
                   f"--output-dir {tmp_path / 'given'}")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "given" / "metrics.json").read_text())
    assert m["vehicles_planned"] == 150 and m["vehicles_arrived"] > 0


# --- bad input: one line naming option and value, before SUMO starts -------------------------

BAD_INPUTS = [
    ("--routing_strategy 'shortest 70 realtime 20'", "--routing_strategy"),
    ("--routing_strategy 'teleport 100'", "--routing_strategy"),
    ("--vehicle_types 'passenger 90 tram 10'", "--vehicle_types"),
    ("--traffic_light_strategy diagonal", "--signal-programs"),
    ("--grid_dimension 3 --junctions_to_remove 5", "--junctions_to_remove"),
    ("--grid_dimension 3 --junctions_to_remove Z9", "--junctions_to_remove"),
    ("--lane_count 1 --traffic_light_strategy partial_opposites", "partial_opposites"),
    ("--num_vehicles 0", "--num_vehicles"),
    ("--num_vehicles -5", "--num_vehicles"),
    ("--block_size_m 0", "--block_size_m"),
    ("--net-file /nonexistent/net.xml", "--net-file"),
    ("--route-file /nonexistent/routes.xml", "--route-file"),
    ("--departure_pattern 'custom:07:00-06:00,50'", "--departure_pattern"),
    ("--traffic_control rl", "--model-path"),
]


@pytest.mark.parametrize("args,option", BAD_INPUTS)
def test_bad_input_is_one_clear_line(args, option, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(f"{args} --output-dir {out}")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert option in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing ran


def test_parse_simulation_params_raises_instead_of_exiting():
    with pytest.raises(ParameterError, match="--vehicle_types"):
        parse_simulation_params("--vehicle_types 'passenger 50'")
