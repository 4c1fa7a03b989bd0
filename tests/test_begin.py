"""Runs from a time of day (`--begin`, `begin:`, a study's begin) on a tiny grid of our own:
the same demand shifted by the begin gives the same metrics under every controller, every
controller's clock starts at the begin, episodes run begin..end, replay strings keep the
begin, and bad time spans are one line."""

from __future__ import annotations

import re
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CONFIG_FILES, REPO_ROOT, TINY_CONTROL, TINY_NETWORK, python, tiny_scenario
from src.argv import parse_simulation_params, to_command_line
from route_fixtures import COUNT_A, build_route_fixture
from src.metrics import compute_trip_metrics
from src.orchestration.evaluate import evaluate_controllers
from src.orchestration.simulation import run_simulation
from src.params import ParameterError
from src.rl.config import ConfigError, build_env_params_for_scenario, load_modular_config, scenario_params
from src.rl.config.experiment import scenario_env_options
from src.rl.environment import TrafficControlEnv
from src.rl.phase_env import PhaseSelectEnv
from src.rl.training import build_shared_network

#: Not a multiple of the tiny grid's 60 s cycle: a clock that counts from time 0 shows.
BEGIN = 3630
LENGTH = 600
CONTROLLERS = ["fixed", "actuated", "max_pressure", "max_pressure_cycle", "tree_method"]


def shifted(begin: int, extra: str = "", vehicles: int = 200) -> str:
    return tiny_scenario(vehicles, end_time=begin + LENGTH, extra=f"--begin {begin} {extra}")


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_the_same_demand_from_a_later_begin_gives_the_same_metrics(tiny_network, tmp_path, controller):
    metrics = {}
    for begin in (0, BEGIN):
        params = parse_simulation_params(shifted(begin, f"--traffic_control {controller} --output-dir {tmp_path / str(begin)}"))
        metrics[begin] = run_simulation(params, progress=False, network_dir=tiny_network).metrics
    # generated departures count from the begin: the same trips, 3630 s later
    departs = [float(e.get("depart")) for e in ET.parse(tmp_path / f"{BEGIN}/routes.rou.xml").getroot().iter("vehicle")]
    assert BEGIN <= min(departs) and max(departs) < BEGIN + LENGTH
    assert metrics[0]["vehicles_planned"] == metrics[BEGIN]["vehicles_planned"] == 200
    assert metrics[0]["vehicles_arrived"] > 150
    assert metrics[BEGIN] == pytest.approx(metrics[0], rel=1e-9, abs=1e-9)


def test_metrics_count_from_the_planned_departure_inside_the_run(tmp_path):
    tripinfo = tmp_path / "tripinfo.xml"
    tripinfo.write_text("""<tripinfos>
  <tripinfo id="a" depart="3610.00" arrival="3710.00" duration="100.00" waitingTime="20.00" timeLoss="30.00"/>
  <tripinfo id="c" depart="3950.00" arrival="-1" duration="250.00" waitingTime="100.00" timeLoss="120.00"/>
</tripinfos>""")
    planned = {"early": 3500.0, "a": 3600.0, "c": 3900.0, "never": 4100.0, "late": 4200.0}
    m = compute_trip_metrics(tripinfo, planned, end_time=4200.0, begin=3600.0)
    assert m["vehicles_planned"] == 3  # "early" departs before the begin, "late" at the end
    # a: 100 + 10 insertion delay; c: running since planned 3900 -> 300; never: 4100 -> 100
    assert m["mean_travel_time_all"] == pytest.approx((110 + 300 + 100) / 3)
    assert m["throughput_per_hour"] == pytest.approx(1 / (600 / 3600))


def _switch_times(folder: Path, tls: str) -> Path:
    """An additional file making SUMO write every phase change of `tls`."""
    add = folder / "switches.add.xml"
    add.write_text(f'<additional>\n    <timedEvent type="SaveTLSStates" source="{tls}" '
                   f'dest="{folder / "switches.xml"}"/>\n</additional>\n')
    return add


@pytest.mark.parametrize("extra", ["", "--cycle-length 60"])  # generated programs; the equal split written by fixed
def test_a_fixed_cycle_starts_at_the_begin(tiny_network, tmp_path, extra):
    from dataclasses import replace

    params = parse_simulation_params(shifted(BEGIN, f"--traffic_control fixed --output-dir {tmp_path} {extra}"))
    params = replace(params, additional_files=(_switch_times(tmp_path, "B1"),))
    run_simulation(params, progress=False, network_dir=tiny_network)
    states = [(float(s.get("time")), int(s.get("phase"))) for s in ET.parse(tmp_path / "switches.xml").getroot()
              if s.tag == "tlsState"]  # one per second
    assert states[0] == (BEGIN, 0)
    # phase 0 (re)starts every 60 s from the begin
    starts = [t for k, (t, phase) in enumerate(states) if phase == 0 and (k == 0 or states[k - 1][1] != 0)]
    assert starts[:3] == [BEGIN, BEGIN + 60, BEGIN + 120]


def test_phase_select_decides_every_interval_from_the_begin_and_episodes_run_begin_to_end(tiny_network, tmp_path):
    env = PhaseSelectEnv(shifted(BEGIN), tiny_network, decision_interval=10, work_dir=tmp_path / "env")
    for _ in range(2):  # two episodes, each from the begin
        env.reset(seed=0)
        assert env.sim.time == BEGIN + 10  # the warm-up interval
        assert set(env.actuator.green_since.values()) == {BEGIN}
        times, truncated = [], False
        while not truncated:
            _, _, _, truncated, info = env.step(np.full(env.num_signals, len(times) // 2 % env.max_phases))
            times.append(info["sim_time"])
        assert times == [BEGIN + 10 * k for k in range(2, LENGTH // 10 + 1)]
        metrics = info["episode_metrics"]
        assert metrics["vehicles_planned"] == 200 and metrics["vehicles_arrived"] > 100
    env.close()


def test_cycle_splits_episodes_run_from_the_begin(tiny_network, tmp_path):
    env = TrafficControlEnv(shifted(BEGIN), tiny_network, work_dir=tmp_path / "env")
    env.reset(seed=0)
    assert env.sim.time == BEGIN + 60  # the warm-up cycle
    truncated, steps = False, 0
    while not truncated:
        _, _, _, truncated, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        steps += 1
    assert steps == LENGTH // 60 - 1 and info["sim_time"] == BEGIN + LENGTH
    assert info["episode_metrics"]["vehicles_planned"] == 200
    env.close()


def test_replay_strings_keep_the_begin(tmp_path):
    params = parse_simulation_params(shifted(BEGIN))
    line = to_command_line(params)
    assert f"--begin {BEGIN} " in line and f"--end-time {BEGIN + LENGTH}" in line
    assert parse_simulation_params(line) == params
    # from the execution file through the scenario's replay string
    execution = tmp_path / "execution.yaml"
    execution.write_text(yaml.safe_dump({**yaml.safe_load(CONFIG_FILES["execution"].read_text()),
                                         "begin": BEGIN, "end_time": BEGIN + LENGTH}))
    config = load_modular_config(*(CONFIG_FILES[r] for r in ("network", "scenarios", "algorithm", "reward")), execution)
    replay = build_env_params_for_scenario(config, config.scenarios[0])
    assert f"--begin {BEGIN} " in replay
    assert parse_simulation_params(replay) == scenario_params(config, config.scenarios[0])
    # without an end, a run lasts the default hour from its begin
    assert parse_simulation_params(f"{TINY_NETWORK} {TINY_CONTROL} --begin 7200").traffic.end_time == 7200 + 3600


def _cli(args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python(), "-m", "src.cli", *shlex.split(args), "--quiet"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_bad_time_spans_are_one_line(tiny_network, tmp_path):
    for args, expected in [("--begin 600 --end-time 600", "--begin: invalid value 600; the run must begin before its end"),
                           ("--begin -5", "--begin: invalid value -5; expected an integer >= 0")]:
        with pytest.raises(ParameterError, match=expected):
            parse_simulation_params(f"{TINY_NETWORK} {TINY_CONTROL} {args}")
    # a route file whose trips all depart before the begin: one line, exit 2, before SUMO runs
    routes = tmp_path / "early.rou.xml"
    routes.write_text('<routes>\n    <trip id="t0" depart="10" from="A0B0" to="B0C0"/>\n</routes>\n')
    proc = _cli(f"--net-file {tiny_network / 'network.net.xml'} --route-file {routes} --begin 3600 "
                f"--output-dir {tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no vehicle departs inside the run [3600, 7200) s" in lines[0], proc.stderr
    # in a config: begin after end_time names the file and the key
    execution = tmp_path / "execution.yaml"
    execution.write_text(yaml.safe_dump({"begin": 900, "end_time": 900}))
    with pytest.raises(ConfigError, match=r"execution\.yaml: .*key 'begin': .*(--begin)"):
        load_modular_config(*(CONFIG_FILES[r] for r in ("network", "scenarios", "algorithm", "reward")), execution)


# --- a study of our own from its time of day: evaluation harness and `sumocfg:` scenario -----------

STUDY_BEGIN = 3600  # a multiple of the fixture's 60 s cycle: its own programs keep SUMO's clock


def _shifted_study(fx) -> Path:
    """The fixture's study run one hour later, plus one vehicle planned before its begin."""
    text = re.sub(r'depart="([0-9.]+)"', lambda m: f'depart="{float(m.group(1)) + STUDY_BEGIN:.1f}"',
                  fx.route_files[0].read_text())
    (fx.folder / "later_a.rou.xml").write_text(
        text.replace("</routes>", '    <vehicle id="early" type="car" route="ra0" depart="100.0"/>\n</routes>'))
    study = fx.sumocfg.read_text().replace("routes_a.rou.xml", "later_a.rou.xml")
    study = study.replace('<begin value="0"/>', f'<begin value="{STUDY_BEGIN}"/>')
    cfg = fx.folder / "later.sumocfg"
    cfg.write_text(study.replace('<end value="0:05:00"/>', f'<end value="{STUDY_BEGIN + 300}"/>'))
    return cfg


def test_a_study_from_its_time_of_day_evaluates_like_the_same_study_at_zero(tmp_path):
    fx = build_route_fixture(tmp_path / "study")
    later = _shifted_study(fx)
    table = evaluate_controllers(None, None, "fixed,max_pressure", repeats=1, out_dir=tmp_path / "eval", workers=1,
                                 sumocfg_files=[fx.sumocfg, later])
    rows = {(r["scenario"], r["controller"]): r for r in table.to_dict("records")}
    for controller in ("fixed", "max_pressure"):
        at_zero, shifted_row = rows[("study", controller)], rows[("study_1", controller)]
        assert shifted_row["vehicles_planned_mean"] == COUNT_A  # "early" is not part of the run
        for metric in ("mean_travel_time_mean", "mean_travel_time_all_mean", "vehicles_arrived_mean"):
            assert shifted_row[metric] == pytest.approx(at_zero[metric]), (controller, metric)


def test_a_study_scenario_trains_over_its_own_span(tmp_path):
    fx = build_route_fixture(tmp_path / "study")
    later = _shifted_study(fx)
    files = {"network": tmp_path / "network.yaml", "scenarios": tmp_path / "scenarios.yaml",
             "algorithm": CONFIG_FILES["algorithm"], "reward": REPO_ROOT / "rl/configs/reward/delay.yaml",
             "execution": tmp_path / "execution.yaml"}
    files["network"].write_text(f"net_file: {fx.net_file}\ncontrol_mode: phase_select\ndecision_interval: 5\n")
    files["scenarios"].write_text(yaml.safe_dump({"scenarios": [{"name": "later", "sumocfg": str(later)}]}))
    files["execution"].write_text("total_timesteps: 64\n")  # no begin, no end_time: the study's own span
    config = load_modular_config(*files.values())
    params = scenario_params(config, config.scenarios[0])
    assert (params.traffic.begin, params.traffic.end_time) == (STUDY_BEGIN, STUDY_BEGIN + 300)
    replay = build_env_params_for_scenario(config, config.scenarios[0])
    assert f"--begin {STUDY_BEGIN} --end-time {STUDY_BEGIN + 300}" in replay
    assert parse_simulation_params(replay).traffic == params.traffic
    env = PhaseSelectEnv(params, build_shared_network(f"--net-file {fx.net_file}", tmp_path / "network"),
                         decision_interval=5, work_dir=tmp_path / "env", **scenario_env_options(config.scenarios[0]))
    env.reset(seed=0)
    assert env.sim.time == STUDY_BEGIN + 5
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(np.zeros(env.num_signals, dtype=int))
    assert info["sim_time"] == STUDY_BEGIN + 300
    assert info["episode_metrics"]["vehicles_planned"] == COUNT_A and info["episode_metrics"]["vehicles_arrived"] > 0
    env.close()
    # an execution end_time before the study's begin names the key and the scenario
    files["execution"].write_text("end_time: 900\n")
    with pytest.raises(ConfigError, match=r"key 'end_time': 900 is not after the begin 3600 s of scenario 'later'"):
        load_modular_config(*files.values())


# --- real junctions: one network, junctions of different phase counts --------------------------------


def _mixed_phase_network(fx, folder: Path) -> Path:
    """The fixture's corridor with J2 reduced to two greens (each axis with its permitted left)
    and an all-red after each yellow: J1 keeps four greens."""
    from src.network.phases import read_phase_plans, yellow_between
    from src.sumo_integration.tools import run_tool

    j2 = read_phase_plans(fx.net_file)["J2"]
    ns, ew = j2.green_states[0], j2.green_states[2]
    red = "r" * len(ns)
    phases = [(20, ns), (3, yellow_between(ns, ew)), (2, red), (20, ew), (3, yellow_between(ew, ns)), (2, red)]
    tll = folder / "j2.tll.xml"
    tll.write_text('<additional>\n    <tlLogic id="J2" type="static" programID="0" offset="0">\n'
                   + "".join(f'        <phase duration="{d}" state="{s}"/>\n' for d, s in phases)
                   + "    </tlLogic>\n</additional>\n")
    net = folder / "mixed.net.xml"
    run_tool("netconvert", ["--sumo-net-file", str(fx.net_file), "--tllogic-files", str(tll), "--output-file", str(net)])
    return net


def test_junctions_of_different_phase_counts_share_one_observation_and_action_layout(tmp_path):
    fx = build_route_fixture(tmp_path / "study")
    net = _mixed_phase_network(fx, tmp_path)
    network = build_shared_network(f"--net-file {net}", tmp_path / "network")
    shifted_routes = tmp_path / "later.rou.xml"
    shifted_routes.write_text(re.sub(r'depart="([0-9.]+)"', lambda m: f'depart="{float(m.group(1)) + 600:.1f}"',
                                     fx.route_files[0].read_text()))
    params = parse_simulation_params(f"--net-file {net} --route-file {shifted_routes} --begin 600 --end-time 900")
    env = PhaseSelectEnv(params, network, decision_interval=5, work_dir=tmp_path / "env",
                         route_files=[str(shifted_routes)])
    obs, _ = env.reset(seed=0)
    assert env.observer.phase_counts == {"J1": 4, "J2": 2} and env.max_phases == 4
    j2 = obs[env.observer.tls_ids.index("J2")]
    base = 4 * 4  # four features per phase slot, four slots
    assert list(j2[base + 4: base + 8]) == [1, 1, 0, 0]  # which slots exist: J2's two
    assert not j2[2 * 4: base].any()  # its empty slots read zero
    # slot 3 is J1's fourth green, for J2 a slot it lacks: J1 switches, J2 keeps its green
    env.step(np.array([3, 3]))
    assert env.actuator.current == {"J1": 3, "J2": 0}
    # asking J2 for its second green runs its own yellow and all-red first
    now = env.sim.time
    env.step(np.array([3, 1]))
    assert env.actuator.current["J2"] == 1 and env.actuator.green_since["J2"] == now + 3 + 2
    env.close()
