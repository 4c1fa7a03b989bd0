"""Training on recorded demand: route-file scenarios rotate per episode on a network that
keeps its own multi-phase programs (real netconvert, SUMO, PPO)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO_ROOT, artifact_paths, python, subprocess_env
from route_fixtures import COUNT_A, COUNT_B, END_TIME, GREENS, build_route_fixture, write_bad_route_files
from src.network.phases import read_phase_plans
from src.orchestration.evaluate import evaluate_controllers
from src.argv import parse_simulation_params
from src.rl.config import ConfigError, build_env_params_for_scenario, load_modular_config, scenario_params
from src.rl.config.experiment import scenario_env_options
from src.rl.phase_env import PhaseSelectEnv
from src.rl.pipeline import run_training
from src.rl.training import build_shared_network

ROUTE_IDS = {"routes_a.rou.xml": [f"a{k}" for k in range(COUNT_A)],
             "routes_b.rou.xml": [f"b{k}" for k in range(COUNT_B)]}


def train_script():
    """rl/server/train.py as a module (its parser is the one a user runs)."""
    spec = importlib.util.spec_from_file_location("server_train", REPO_ROOT / "rl/server/train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    fx = build_route_fixture(tmp_path_factory.mktemp("routes"))
    network = build_shared_network(f"--net-file {fx.net_file}", tmp_path_factory.mktemp("net") / "network")
    return fx, network


def trip_ids(tripinfo) -> set:
    return {t.get("id") for t in ET.parse(tripinfo).getroot().iter("tripinfo")}


def test_env_rotates_route_files_and_keeps_the_programs(fixture, tmp_path):
    fx, network = fixture
    plans = read_phase_plans(network / "network.net.xml")
    assert {t: p.num_phases for t, p in plans.items()} == {"J1": 4, "J2": 4}  # the hand-written programs
    assert [p.green_durations for _, p in sorted(plans.items())] == [list(g) for _, g in sorted(fx.greens.items())]
    env = PhaseSelectEnv(f"--net-file {fx.net_file} --route-file {fx.route_files[0]} --end-time {END_TIME}", network,
                         decision_interval=5, work_dir=tmp_path / "env", route_files=[str(f) for f in fx.route_files])
    used = []
    for _ in range(3):
        _, info = env.reset()
        truncated = False
        while not truncated:
            _, _, _, truncated, info = env.step(np.zeros(env.num_signals, dtype=int))
        used.append(info["route_file"])
        ran = trip_ids(env.last_episode_dir / "tripinfo.xml")
        expected = set(fx.vehicle_ids[info["route_file"]])
        assert ran and ran <= expected  # SUMO's own trip records: only that file's vehicles
        assert 0 < info["episode_metrics"]["vehicles_arrived"] <= len(ran)
    assert used == ["routes_a.rou.xml", "routes_b.rou.xml", "routes_a.rou.xml"]
    env.close()


# --- from YAML files through the training pipeline into MLflow ---------------------------------

CONFIGS = REPO_ROOT / "rl/configs"
EXECUTION = {"end_time": END_TIME, "total_timesteps": 384, "n_steps": 64, "batch_size": 64, "n_epochs": 2,
             "checkpoint_freq": 10**6, "eval_freq": 0, "early_stopping_patience": 0}


def write_experiment(folder: Path, route_files, entry=None) -> Dict[str, Path]:
    """A network YAML naming the fixture's net file, a scenarios YAML with one route-file scenario
    (or the scenario `entry`, e.g. a study's `sumocfg`)."""
    fx = build_route_fixture(folder / "study")
    files = {"network": folder / "network.yaml", "scenarios": folder / "scenarios.yaml",
             "algorithm": CONFIGS / "algorithm/ppo_small.yaml", "reward": CONFIGS / "reward/delay.yaml",
             "execution": folder / "execution.yaml"}
    files["network"].write_text(f"net_file: study/{fx.net_file.name}\ncontrol_mode: phase_select\n"
                                "decision_interval: 5\nmin_green: 5\n")
    files["scenarios"].write_text(yaml.safe_dump({"scenarios": [entry or {"name": "recorded", "route_files": route_files}]}))
    files["execution"].write_text(yaml.safe_dump(EXECUTION))
    return files


def train_args(files: Dict[str, Path], store: str, models: Path) -> List[str]:
    return [*(a for role, path in files.items() for a in (f"--{role}", str(path))),
            "--tracking-uri", store, "--models-dir", str(models)]


def test_route_file_scenario_trains_through_the_pipeline_and_mlflow_records_its_files(tmp_path, mlflow_store):
    files = write_experiment(tmp_path, ["study/routes_a.rou.xml", "study/routes_b.rou.xml"])
    fx_files = [tmp_path / "study/routes_a.rou.xml", tmp_path / "study/routes_b.rou.xml"]
    config = load_modular_config(*(files[r] for r in ("network", "scenarios", "algorithm", "reward", "execution")))
    replay = build_env_params_for_scenario(config, config.scenarios[0])
    # the replay string runs the first file on the network's own programs and cycle: no generator, no cycle
    assert f"--route-file {fx_files[0]}" in replay
    assert "--num_vehicles" not in replay and "--cycle-length" not in replay

    args = train_script().build_parser().parse_args(train_args(files, mlflow_store, tmp_path / "models"))
    outcome = run_training(args, "server")
    assert outcome.num_timesteps >= 384 and outcome.run_id

    # the programs were kept: 4 phases per junction with the fixture's own green durations
    plans = read_phase_plans(outcome.model_dir / "network/network.net.xml")
    assert {t: p.num_phases for t, p in plans.items()} == {"J1": 4, "J2": 4}
    assert {t: tuple(p.green_durations) for t, p in plans.items()} == GREENS

    # each episode ran the expected file: sequential rotation a, b, a, ... per MLflow and SUMO's records
    client = MlflowClient(tracking_uri=mlflow_store)
    history = sorted(client.get_metric_history(outcome.run_id, "scenario/recorded/route_file_index"),
                     key=lambda m: m.step)
    used = [int(m.value) for m in history]
    assert len(used) >= 3 and used == [k % 2 for k in range(len(used))]
    last = fx_files[used[-1]].name
    ran = trip_ids(outcome.model_dir / "envs/00_recorded/last_episode/tripinfo.xml")
    assert ran and ran <= set(ROUTE_IDS[last])  # only the last episode's file's vehicles

    # MLflow holds the files' checksums and the (small) files themselves
    record = json.loads(Path(client.download_artifacts(outcome.run_id, "route_files/recorded.json",
                                                       str(tmp_path / "dl"))).read_text())
    assert [(Path(r["path"]).name, r["sha256"]) for r in record["files"]] == \
        [(f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in fx_files]
    assert [r["vehicles"] for r in record["files"]] == [40, 25] and record["route_order"] == "sequential"
    assert {"route_files/recorded/routes_a.rou.xml", "route_files/recorded/routes_b.rou.xml"} <= \
        artifact_paths(mlflow_store, outcome.run_id)
    # ... and lists them as the run's dataset inputs, with their digests, beside the scenario list
    inputs = {d.dataset.name: d for d in client.get_run(outcome.run_id).inputs.dataset_inputs}
    assert {n: d.dataset.digest for n, d in inputs.items() if n.startswith("recorded/")} == \
        {f"recorded/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in fx_files}
    assert {t.key: t.value for t in inputs["recorded/routes_a.rou.xml"].tags}["mlflow.data.context"] == "training"
    assert files["scenarios"].stem in inputs and inputs[files["scenarios"].stem].dataset.source_type == "local"


@pytest.mark.parametrize("problem", ["unknown_edge", "empty", "not_xml", "late"])
def test_a_bad_route_file_is_one_line_before_any_run(tmp_path, mlflow_store, problem):
    bad = write_bad_route_files(tmp_path / "bad")[problem]
    files = write_experiment(tmp_path, ["study/routes_a.rou.xml", str(bad)])
    proc = subprocess.run([python(), str(REPO_ROOT / "rl/server/train.py"),
                           *train_args(files, mlflow_store, tmp_path / "models")],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]  # (MLflow's import warning aside)
    assert len(lines) == 1 and "scenario 'recorded'" in lines[0] and bad.name in lines[0], proc.stderr
    assert MlflowClient(tracking_uri=mlflow_store).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=mlflow_store).search_experiments()]) == []
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_evaluation_of_a_route_file_scenario_gives_one_row_per_file(tmp_path):
    files = write_experiment(tmp_path, "study/routes_*.rou.xml")
    table = evaluate_controllers(files["network"], files["scenarios"], "fixed,max_pressure", repeats=1,
                                 out_dir=tmp_path / "eval", workers=1)
    rows = {(r["scenario"], r["controller"]): r for r in table.to_dict("records")}
    assert set(rows) == {(s, c) for s in ("recorded.routes_a", "recorded.routes_b") for c in ("fixed", "max_pressure")}
    # each row ran its own file only (its planned vehicles), `fixed` on the network's own program
    assert rows[("recorded.routes_a", "fixed")]["vehicles_planned_mean"] == COUNT_A
    assert rows[("recorded.routes_b", "fixed")]["vehicles_planned_mean"] == COUNT_B
    runs = pd.read_csv(tmp_path / "eval/evaluation_runs.csv")
    assert not runs["env_params"].str.contains("--cycle-length|--num_vehicles").any()
    assert (runs["vehicles_arrived"] > 0).all()


# --- a study folder as a scenario (`sumocfg:`) -----------------------------------------------------

STUDY_OPTIONS = (("ignore-route-errors", "true"), ("time-to-teleport", "120"))  # the fixture's processing section


def load(files: Dict[str, Path]):
    return load_modular_config(*(files[r] for r in ("network", "scenarios", "algorithm", "reward", "execution")))


def test_a_study_scenario_runs_its_route_file_with_its_options(tmp_path):
    files = write_experiment(tmp_path, None, {"name": "study", "sumocfg": "study/study.sumocfg"})
    config = load(files)
    scenario = config.scenarios[0]
    routes_a = tmp_path / "study/routes_a.rou.xml"
    assert scenario["sumocfg"] == str(tmp_path / "study/study.sumocfg") and scenario["route_files"] == [str(routes_a)]
    params = scenario_params(config, scenario)
    assert params.sumo_options == STUDY_OPTIONS and params.traffic.route_file == routes_a
    assert params.traffic.end_time == END_TIME
    replay = build_env_params_for_scenario(config, scenario)  # replays through the study, options included
    assert replay.startswith(f"--sumocfg {tmp_path / 'study/study.sumocfg'} ") and "--route-file" not in replay
    again = parse_simulation_params(replay)
    assert again.sumo_options == STUDY_OPTIONS and again.traffic.route_file == routes_a
    assert load(files).scenarios == config.scenarios  # loading again gives the same (resolved) entry

    network = build_shared_network(f"--net-file {config.net_file}", tmp_path / "network")
    env = PhaseSelectEnv(params, network, decision_interval=5, work_dir=tmp_path / "env", scenario_name="study",
                         **scenario_env_options(scenario))
    _, info = env.reset()
    assert info["route_file"] == "routes_a.rou.xml"
    command = env.sim.command()
    assert all(command[command.index(f"--{k}") + 1] == v for k, v in STUDY_OPTIONS)  # SUMO runs with them
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(np.zeros(env.num_signals, dtype=int))
    ran = trip_ids(env.last_episode_dir / "tripinfo.xml")
    assert ran and ran <= set(ROUTE_IDS["routes_a.rou.xml"])
    assert info["episode_metrics"]["vehicles_arrived"] > 0
    env.close()


def _other_net(folder: Path) -> Path:
    """The fixture's net file with one more (unused) character: other content, other path."""
    net = folder / "study/other.net.xml"
    net.write_text((folder / "study/corridor.net.xml").read_text() + "\n")
    return net


@pytest.mark.parametrize("problem", ["net", "route_files", "generator", "end"])
def test_a_bad_study_scenario_is_one_line(tmp_path, problem):
    entry = {"name": "study", "sumocfg": "study/study.sumocfg"}
    if problem == "route_files":
        entry["route_files"] = "study/routes_b.rou.xml"
    if problem == "generator":
        entry["num_vehicles"] = 100
    files = write_experiment(tmp_path, None, entry)
    if problem == "net":
        files["network"].write_text(files["network"].read_text().replace(
            "study/corridor.net.xml", str(_other_net(tmp_path).relative_to(tmp_path))))
    if problem == "end":
        files["execution"].write_text(yaml.safe_dump({**EXECUTION, "end_time": 400}))
    with pytest.raises(ConfigError) as caught:
        load(files)
    message = str(caught.value)
    assert "\n" not in message and "scenario 'study'" in message, message
    expected = {"net": ["other.net.xml", "corridor.net.xml", "study.sumocfg"], "route_files": ["remove route_files"],
                "generator": ["num_vehicles", "sumocfg"], "end": ["300 s", "end_time 400"]}[problem]
    assert all(text in message for text in expected), message


def test_evaluation_of_a_study_scenario_replays_the_study(tmp_path):
    files = write_experiment(tmp_path, None, {"name": "study", "sumocfg": "study/study.sumocfg"})
    table = evaluate_controllers(files["network"], files["scenarios"], "fixed", repeats=1, out_dir=tmp_path / "eval",
                                 workers=1, execution_config=files["execution"])  # its end_time: the study's 300 s
    row = table.to_dict("records")[0]
    assert (row["scenario"], row["controller"], row["vehicles_planned_mean"]) == ("study", "fixed", COUNT_A)
    runs = pd.read_csv(tmp_path / "eval/evaluation_runs.csv")
    assert runs["env_params"].str.startswith("--sumocfg ").all() and (runs["vehicles_arrived"] > 0).all()


def test_cycle_splits_on_kept_programs_works_in_their_own_cycle(fixture, tmp_path):
    """Without a chosen `cycle_lengths`, a cycle_splits policy on a net file's kept programs
    splits the programs' own 60 s cycle (as `fixed` runs them), not the default 90 s."""
    from dataclasses import replace

    from src.rl.training import cycle_lengths_on

    _, network = fixture
    config = load(write_experiment(tmp_path, ["study/routes_a.rou.xml"]))
    config = replace(config, control_mode="cycle_splits")
    assert cycle_lengths_on(config, network) == [60]
    chosen = replace(config, cycle_lengths=[80], key_sources={**config.key_sources, "cycle_lengths": "test"})
    assert cycle_lengths_on(chosen, network) == [80]
