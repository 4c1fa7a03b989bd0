"""A given network's own signal programs: kept byte for byte, run by every controller, and
a study's .sumocfg run as published (its options, plain `sumo` reproduced by actuated)."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from src.argv import parse_simulation_params
from src.control.actuator import plan_timing, program_durations
from src.network import build_network, read_phase_plans
from src.network.netfile import read_net
from src.orchestration.evaluate import evaluate_controllers
from src.orchestration.simulation import run_simulation
from src.orchestration.table import DELAY_LABEL, format_table
from src.params import NetworkParams, ParameterError
from src.rl.environment import TrafficControlEnv
from src.rl.training import build_shared_network
from src.sumo_integration.tools import run_tool, sumo_binary

ARMS = {"N": (0, 200), "E": (200, 0), "S": (0, -200), "W": (-200, 0)}
NS_GREEN, EW_GREEN, ALL_RED = 30, 20, 2


def _write_kept_net(folder: Path) -> Path:
    """One signal, four one-lane arms, a hand-written actuated program without yellow:
    N-S green 30 s (10-50), all-red 2 s, E-W green 20 s (10-40), all-red 2 s."""
    folder.mkdir(parents=True, exist_ok=True)
    nodes = ['<node id="C" x="0" y="0" type="traffic_light"/>']
    nodes += [f'<node id="{k}" x="{x}" y="{y}" type="priority"/>' for k, (x, y) in ARMS.items()]
    (folder / "n.nod.xml").write_text("<nodes>\n" + "\n".join(nodes) + "\n</nodes>\n")
    edges = []
    for k in ARMS:
        edges.append(f'<edge id="{k}in" from="{k}" to="C" numLanes="1" speed="13.9"/>')
        edges.append(f'<edge id="{k}out" from="C" to="{k}" numLanes="1" speed="13.9"/>')
    (folder / "n.edg.xml").write_text("<edges>\n" + "\n".join(edges) + "\n</edges>\n")
    base = folder / "base.net.xml"
    run_tool("netconvert", ["--node-files", str(folder / "n.nod.xml"), "--edge-files", str(folder / "n.edg.xml"),
                            "--no-turnarounds", "--output-file", str(base)])
    links = {c.link_index: c.from_edge for c in read_net(base).connections if c.tl == "C"}
    size = max(links) + 1

    def state(approaches: str) -> str:
        return "".join("G" if links.get(i, "")[:1] in approaches else "r" for i in range(size))

    tll = folder / "own.tll.xml"
    tll.write_text(
        '<additional>\n    <tlLogic id="C" type="actuated" programID="0" offset="0">\n'
        '        <param key="max-gap" value="3.0"/>\n'
        f'        <phase duration="{NS_GREEN}" minDur="10" maxDur="50" state="{state("NS")}"/>\n'
        f'        <phase duration="{ALL_RED}" state="{"r" * size}"/>\n'
        f'        <phase duration="{EW_GREEN}" minDur="10" maxDur="40" state="{state("EW")}"/>\n'
        f'        <phase duration="{ALL_RED}" state="{"r" * size}"/>\n'
        '    </tlLogic>\n</additional>\n')
    net = folder / "own.net.xml"
    run_tool("netconvert", ["--sumo-net-file", str(base), "--tllogic-files", str(tll), "--output-file", str(net)])
    return net


def _write_trips(path: Path, count: int, spacing: float) -> Path:
    pairs = [("Nin", "Sout"), ("Sin", "Nout"), ("Ein", "Wout"), ("Win", "Eout"), ("Nin", "Eout"), ("Ein", "Sout")]
    trips = [f'    <trip id="t{k}" depart="{k * spacing:.1f}" from="{pairs[k % len(pairs)][0]}" '
             f'to="{pairs[k % len(pairs)][1]}"/>' for k in range(count)]
    path.write_text("<routes>\n" + "\n".join(trips) + "\n</routes>\n")
    return path


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> Dict[str, Path]:
    folder = tmp_path_factory.mktemp("kept")
    net = _write_kept_net(folder)
    trips = _write_trips(folder / "trips.xml", 240, 2.5)
    cfg = folder / "study.sumocfg"
    cfg.write_text(
        '<configuration>\n    <input>\n        <net-file value="own.net.xml"/>\n'
        '        <route-files value="trips.xml"/>\n    </input>\n'
        '    <time>\n        <begin value="0"/>\n        <end value="800"/>\n    </time>\n'
        '    <processing>\n        <ignore-route-errors value="true"/>\n    </processing>\n'
        '    <routing>\n        <device.rerouting.adaptation-steps value="18"/>\n'
        '        <device.rerouting.adaptation-interval value="10"/>\n    </routing>\n'
        '    <report>\n        <no-step-log value="true"/>\n    </report>\n</configuration>\n')
    return {"net": net, "trips": trips, "cfg": cfg, "folder": folder}


def _tl_logics(net_file: Path) -> List[str]:
    return re.findall(r"<tlLogic\b.*?</tlLogic>", Path(net_file).read_text(), re.S)


def test_kept_programs_are_byte_identical_after_the_build(kept, tmp_path):
    art = build_network(NetworkParams(net_file=kept["net"]), tmp_path / "net")
    assert _tl_logics(art.net_file) == _tl_logics(kept["net"]) and len(_tl_logics(kept["net"])) == 1
    assert art.net_file.read_bytes() == kept["net"].read_bytes()
    assert art.signalized_junctions == ["C"]
    assert not (tmp_path / "net" / "land_use.json").exists()  # no synthetic land use unless asked
    # a strategy still replaces them
    other = build_network(NetworkParams(net_file=kept["net"], signal_programs="opposites"), tmp_path / "gen")
    assert _tl_logics(other.net_file) != _tl_logics(kept["net"])


def test_keep_needs_a_net_file(tmp_path):
    with pytest.raises(ParameterError, match="--signal-programs"):
        build_network(NetworkParams(grid_dimension=3, signal_programs="keep"), tmp_path)


def test_phase_plan_of_a_kept_program(kept):
    plan = read_phase_plans(kept["net"])["C"]
    size = len(plan.green_states[0])
    assert plan.num_phases == 2 and plan.program_type == "actuated"
    assert plan.green_durations == [NS_GREEN, EW_GREEN]
    assert plan.min_durations == [10, 10] and plan.max_durations == [50, 40]
    assert plan.transitions == [[(ALL_RED, "r" * size)], [(ALL_RED, "r" * size)]]
    assert plan.cycle_s == NS_GREEN + EW_GREEN + 2 * ALL_RED


def test_controllers_start_from_the_programs_own_cycle_and_durations(kept):
    plans = read_phase_plans(kept["net"])
    timing = plan_timing(plans, None, yellow_time=3, min_green=5)  # --yellow-time is not the program's
    assert (timing.cycle_length, timing.yellow_time) == (NS_GREEN + EW_GREEN + 2 * ALL_RED, ALL_RED)
    assert list(program_durations(plans["C"], timing)) == [NS_GREEN, EW_GREEN]
    longer = plan_timing(plans, 104, yellow_time=3, min_green=5)  # another cycle: the program's shares of it
    assert list(program_durations(plans["C"], longer)) == [60, 40]


def _run(args: str, out: Path):
    params = parse_simulation_params(f"{args} --output-dir {out}")
    return run_simulation(params, progress=False)


def _programs_in(path: Path) -> Dict[str, List[ET.Element]]:
    root = ET.parse(path).getroot()
    return {t.get("id"): list(t.iter("phase")) for t in root.iter("tlLogic")}


def test_fixed_runs_the_programs_own_durations_as_static(kept, tmp_path):
    base = f"--net-file {kept['net']} --route-file {kept['trips']} --end-time 600 --traffic_control fixed"
    result = _run(base, tmp_path / "own")
    phases = _programs_in(tmp_path / "own" / "fixed_programs.add.xml")["C"]
    assert [float(p.get("duration")) for p in phases] == [NS_GREEN, ALL_RED, EW_GREEN, ALL_RED]
    assert all(p.get("minDur") is None for p in phases)
    assert result.metrics["vehicles_arrived"] > 150
    # with a cycle length: the equal split of the greens (the study's "Uniform"), same transitions
    _run(f"{base} --cycle-length 64", tmp_path / "uniform")
    phases = _programs_in(tmp_path / "uniform" / "fixed_programs.add.xml")["C"]
    assert [float(p.get("duration")) for p in phases] == [30, ALL_RED, 30, ALL_RED]


def test_study_sumocfg_options_reach_sumo_and_actuated_reproduces_plain_sumo(kept, tmp_path):
    params = parse_simulation_params(f"--sumocfg {kept['cfg']}")
    assert params.network.net_file == kept["net"].resolve() and params.traffic.end_time == 800
    assert ("ignore-route-errors", "true") in params.sumo_options
    assert ("device.rerouting.adaptation-steps", "18") in params.sumo_options
    assert not any(name == "no-step-log" for name, _ in params.sumo_options)  # report options are ours
    ours = _run(f"--sumocfg {kept['cfg']} --traffic_control actuated --sumo-seed 3", tmp_path / "ours")
    assert not (tmp_path / "ours" / "actuated_programs.add.xml").exists()  # the net's own actuated program
    plain = tmp_path / "plain.xml"
    subprocess.run([sumo_binary("sumo"), "-c", str(kept["cfg"]), "--seed", "3", "--tripinfo-output", str(plain)],
                   check=True, capture_output=True)
    trips = [t for t in ET.parse(plain).getroot().iter("tripinfo")]
    assert ours.metrics["vehicles_arrived"] == len(trips)
    assert ours.metrics["mean_travel_time"] == pytest.approx(np.mean([float(t.get("duration")) for t in trips]))


@pytest.mark.parametrize("controller", ["max_pressure", "max_pressure_cycle", "tree_method"])
def test_adaptive_controllers_run_on_kept_programs(kept, tmp_path, controller):
    result = _run(f"--sumocfg {kept['cfg']} --end-time 600 --traffic_control {controller}", tmp_path / controller)
    assert result.metrics["vehicles_arrived"] > 150


def test_sumocfg_errors_are_one_line(kept, tmp_path):
    for args, expected in ((f"--sumocfg {tmp_path / 'none.sumocfg'}", "does not exist"),
                           (f"--sumocfg {kept['cfg']} --net-file {kept['net']}", "leave out --net-file")):
        with pytest.raises(ParameterError, match=expected) as err:
            parse_simulation_params(args)
        assert "\n" not in str(err.value)


def test_evaluation_of_study_configs_and_of_a_network_yaml_with_route_files(kept, tmp_path):
    table = evaluate_controllers(None, None, ["fixed", "actuated"], repeats=1, end_time=300, workers=1,
                                 out_dir=tmp_path / "study", sumocfg_files=[kept["cfg"]],
                                 run_options=["--min-green", "10"])
    name = kept["cfg"].parent.name
    assert list(table["scenario"]) == [name, name] and (table["vehicles_arrived_mean"] > 0).all()
    text = format_table(table)
    assert DELAY_LABEL in text and "RESCO" in text.splitlines()[-1]
    assert table["mean_time_loss_all_mean"].notna().all()

    network = tmp_path / "network.yaml"
    network.write_text(f"net_file: {kept['net']}\nsignal_programs: opposites\ncycle_lengths: [60]\n")
    table = evaluate_controllers(network, None, ["max_pressure"], repeats=1, end_time=300, workers=1,
                                 out_dir=tmp_path / "yaml", route_files=[kept["trips"]])
    assert list(table["scenario"]) == ["trips"] and table["vehicles_arrived_mean"].iloc[0] > 0
    runs = (tmp_path / "yaml" / "evaluation_runs.csv").read_text()
    assert "--signal-programs opposites" in runs


def test_rl_env_acts_on_kept_programs(kept, tmp_path):
    args = f"--net-file {kept['net']} --route-file {kept['trips']} --end-time 120 --cycle-length 60"
    network = build_shared_network(args, tmp_path / "network")
    env = TrafficControlEnv(args, network, work_dir=tmp_path / "env")
    try:
        env.reset(seed=0)
        assert env.timing.yellow_time == ALL_RED  # the program's all-red, not --yellow-time
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        assert env._durations["C"].sum() == 60 - 2 * ALL_RED
    finally:
        env.close()
