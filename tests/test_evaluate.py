"""Controller comparison on the tiny grid: real SUMO runs in worker processes, a real PPO
policy, a real MLflow store."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import CONFIG_FILES, REPO_ROOT, artifact_paths, python, subprocess_env, tiny_scenario
from src.argv import parse_simulation_params
from src.metrics import METRIC_NAMES
from src.orchestration.evaluate import EvaluationRunError, evaluate_controllers
from src.orchestration.inputs import EvaluationError, scenario_name_for_route_file
from src.orchestration.report import log_evaluation, mlflow_tracker
from src.orchestration.simulation import run_simulation
from src.orchestration.table import read_runs
from src.rl.config import load_modular_config
from src.rl.training import train_rl_policy

CONFIGS = REPO_ROOT / "rl" / "configs"
NETWORK = CONFIGS / "network" / "grid3_small.yaml"
CONTROLLERS = ["fixed", "actuated", "max_pressure", "tree_method", "rl"]
END_TIME = 360


@pytest.fixture(scope="module")
def scenarios_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval_config") / "held_out.yaml"
    path.write_text(yaml.safe_dump({"scenarios": [
        {"name": "ev_shortest", "num_vehicles": 160, "private_traffic_seed": 61, "public_traffic_seed": 62,
         "routing_strategy": "shortest 100"},
        {"name": "ev_mixed", "num_vehicles": 240, "private_traffic_seed": 71, "public_traffic_seed": 72,
         "routing_strategy": "shortest 60 realtime 40"},
    ]}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A PPO policy trained for 32 steps on the tiny grid (one env, in this process)."""
    config = load_modular_config(NETWORK, CONFIGS / "scenarios/small_mixed.yaml", CONFIGS / "algorithm/ppo_small.yaml",
                                 CONFIGS / "reward/empirical.yaml", CONFIGS / "execution/quick_test.yaml")
    config = replace(config, scenarios=config.scenarios[:1], end_time=END_TIME, n_steps=16, batch_size=16, n_epochs=2,
                     total_timesteps=32, checkpoint_freq=32, eval_freq=0, early_stopping_patience=0)
    result = train_rl_policy(config, tmp_path_factory.mktemp("eval_model") / "model", in_process=True)
    return result.model_path


def evaluate(scenarios_file: Path, model: str, out_dir: Path) -> pd.DataFrame:
    return evaluate_controllers(NETWORK, scenarios_file, CONTROLLERS, model=model, repeats=2, end_time=END_TIME,
                                out_dir=out_dir, workers=2)


def test_matrix_table_and_mlflow_runs(scenarios_file, tiny_model, tmp_path, mlflow_store, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder (./mlruns) stays in tmp
    client = MlflowClient(tracking_uri=mlflow_store)
    source = client.create_run(client.create_experiment("training")).info.run_id
    client.log_artifact(source, str(tiny_model), "model")
    client.set_terminated(source)
    model_uri = f"runs:/{source}/model/final_model.zip"

    table = evaluate(scenarios_file, model_uri, tmp_path / "eval")

    assert len(table) == 2 * 5
    assert list(zip(table["scenario"], table["controller"]))[:5] == [("ev_shortest", c) for c in CONTROLLERS]
    assert (table["repeats"] == 2).all()
    for name in METRIC_NAMES:
        assert f"{name}_mean" in table and f"{name}_std" in table
    assert table["mean_travel_time_std"].notna().all()
    fixed = table[table["controller"] == "fixed"]
    actuated = table[table["controller"] == "actuated"]
    assert (fixed["mean_travel_time_vs_fixed_pct"] == 0).all() and (fixed["mean_travel_time_all_vs_fixed_pct"] == 0).all()
    assert (actuated["mean_travel_time_vs_actuated_pct"] == 0).all()
    row = table[(table["scenario"] == "ev_mixed") & (table["controller"] == "max_pressure")].iloc[0]
    base = fixed.set_index("scenario").loc["ev_mixed", "mean_travel_time_mean"]
    assert row["mean_travel_time_vs_fixed_pct"] == pytest.approx((row["mean_travel_time_mean"] / base - 1) * 100)
    assert set(table.loc[table["scenario"] == "ev_shortest", "vehicles_planned_mean"]) == {160.0}
    for scenario, group in table.groupby("scenario"):
        values = group["mean_travel_time_all_mean"].round(6)
        assert values.nunique() == 5, (scenario, values.tolist())  # every controller decides differently
    assert (tmp_path / "eval" / "evaluation.csv").is_file()
    runs = read_runs(tmp_path / "eval")
    assert len(runs) == 2 * 5 * 2 and set(runs["sumo_seed"]) == {0, 1} and (runs["error"].isna()).all()
    rl_run = runs[runs["controller"] == "rl"].iloc[0]
    assert "--traffic_control rl" in rl_run["env_params"] and "--model-path" in rl_run["env_params"]
    assert (Path(rl_run["output_dir"]) / "tripinfo.xml").is_file()

    parent_id = log_evaluation(mlflow_tracker("eval_test"), table, runs, tmp_path / "eval", title="eval_test",
                               tags={"purpose": "test"})
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["purpose"] == "test"
    metrics = parent.data.metrics
    assert metrics["rl/ev_mixed/mean_travel_time"] == pytest.approx(
        table[(table["scenario"] == "ev_mixed") & (table["controller"] == "rl")]["mean_travel_time_mean"].iloc[0])
    for controller in CONTROLLERS:
        for scenario in ("ev_shortest", "ev_mixed"):
            assert f"{controller}/{scenario}/mean_travel_time" in metrics
            assert f"{controller}/{scenario}/mean_travel_time_std" in metrics
    assert metrics["fixed/ev_shortest/mean_travel_time_vs_fixed_pct"] == 0
    artifacts = artifact_paths(mlflow_store, parent_id)
    assert {"evaluation.csv", "evaluation_table.json", "mean_travel_time.png", "evaluation_runs.csv"} <= artifacts

    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.data.params["controller"] for c in children) == sorted(CONTROLLERS)
    rl_child = next(c for c in children if c.data.params["controller"] == "rl")
    assert rl_child.data.params["model"] == model_uri
    assert rl_child.data.tags["model_uri"] == model_uri and rl_child.data.tags["model_source_run_id"] == source
    assert rl_child.data.metrics["ev_mixed/mean_travel_time"] == metrics["rl/ev_mixed/mean_travel_time"]
    history = client.get_metric_history(rl_child.info.run_id, "ev_mixed/per_repeat/mean_travel_time")
    assert sorted(m.step for m in history) == [0, 1]
    fixed_child = next(c for c in children if c.data.params["controller"] == "fixed")
    assert "model_uri" not in fixed_child.data.tags and "ev_shortest/mean_travel_time_all" in fixed_child.data.metrics


def test_same_evaluation_gives_the_same_numbers(scenarios_file, tiny_model, tmp_path):
    first = evaluate(scenarios_file, str(tiny_model), tmp_path / "a")
    second = evaluate(scenarios_file, str(tiny_model), tmp_path / "b")
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    runs = read_runs(tmp_path / "a")
    by_seed = runs.pivot_table(index=["scenario", "controller"], columns="sumo_seed", values="mean_travel_time_all")
    assert (by_seed[0] != by_seed[1]).any()  # repeats run with different SUMO seeds


def run_script(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([python(), "rl/evaluate.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_given_network_and_route_files(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    for name, vehicles, seed in (("light", 120, 3), ("busy.peak", 220, 5)):
        out = tmp_path / f"source_{seed}"
        run_simulation(parse_simulation_params(tiny_scenario(vehicles, seed, end_time=END_TIME, extra=f"--output-dir {out}")),
                       progress=False)
        shutil.copy(out / "routes.rou.xml", files / f"{name}.rou.xml")
    shutil.copy(out / "network" / "network.net.xml", files / "city.net.xml")

    proc = run_script(["--net-file", str(files / "city.net.xml"),
                       "--route-files", f"{files / 'light.rou.xml'},{files / 'busy.peak.rou.xml'}",
                       "--controllers", "fixed,max_pressure", "--repeats", "1", "--end-time", str(END_TIME),
                       "--workers", "2", "--no-mlflow", "--output-dir", str(tmp_path / "eval")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max_pressure" in proc.stdout and "evaluation.csv" in proc.stdout
    # stderr is not a terminal: a plain progress line per run, no bar
    progress = re.findall(r"\[(\d)/4\] (\S+): mean travel time [\d.]+ s .*; elapsed \d+ s, eta (\d+) s", proc.stderr)
    assert sorted(int(done) for done, _, _ in progress) == [1, 2, 3, 4]
    assert {label for _, label, _ in progress} == {f"{s}/{c}/rep0" for s in ("light", "busy.peak")
                                                   for c in ("fixed", "max_pressure")}
    assert progress[-1][2] == "0" and "\r" not in proc.stderr and "it/s" not in proc.stderr
    table = pd.read_csv(tmp_path / "eval" / "evaluation.csv")
    assert list(table["scenario"]) == ["light", "light", "busy.peak", "busy.peak"]
    assert dict(zip(table["scenario"], table["vehicles_planned_mean"])) == {"light": 120, "busy.peak": 220}
    assert (table["vehicles_arrived_mean"] > 0).all()
    assert table["mean_travel_time_std"].isna().all()  # one repeat: no spread
    assert (tmp_path / "eval" / "network" / "network.net.xml").is_file()
    assert (tmp_path / "eval" / "mean_travel_time.png").is_file()
    assert scenario_name_for_route_file("a b.trips.xml") == "a_b"

    # a route file SUMO refuses: the run fails, the message says which and where its traceback is
    broken = files / "broken.rou.xml"
    broken.write_text(re.sub(r'edges="[^" ]+', 'edges="no_such_edge', (files / "light.rou.xml").read_text()))
    with pytest.raises(EvaluationRunError, match=r"broken/fixed/rep0 failed: .*no_such_edge"):
        evaluate_controllers(None, None, ["fixed"], net_file=files / "city.net.xml", route_files=[broken], repeats=1,
                             end_time=END_TIME, out_dir=tmp_path / "broken", workers=1)
    runs = read_runs(tmp_path / "broken")
    assert len(runs) == 1 and "no_such_edge" in runs["error"][0]


def test_script_logs_to_mlflow(tmp_path, mlflow_store):
    proc = run_script(["--network", str(NETWORK), "--scenarios", str(CONFIG_FILES["scenarios"]), "--scenario",
                       "small_light", "--controllers", "fixed,max_pressure", "--repeats", "1", "--end-time", "300",
                       "--workers", "2", "--output-dir", str(tmp_path / "eval")],
                      env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_store))
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"MLflow run (\w+) \(experiment 'evaluation_grid3_small', one child run per controller\); "
                      r"open the UI with: mlflow ui --backend-store-uri (\S+)", proc.stdout)
    assert found and found.group(2) == mlflow_store, proc.stdout[-2000:]
    client = MlflowClient(tracking_uri=mlflow_store)
    parent = client.get_run(found.group(1))
    assert parent.info.status == "FINISHED" and parent.data.tags["network"] == "grid3_small"
    assert parent.data.params["scenarios"] == "small_light" and parent.data.params["repeats"] == "1"
    table = pd.read_csv(tmp_path / "eval" / "evaluation.csv").set_index("controller")
    assert parent.data.metrics["max_pressure/small_light/mean_travel_time"] == pytest.approx(
        table.loc["max_pressure", "mean_travel_time_mean"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((c.info.run_name, c.info.status) for c in children) == [("fixed", "FINISHED"),
                                                                           ("max_pressure", "FINISHED")]
    assert {"evaluation.csv", "mean_travel_time.png", "evaluation.json"} <= artifact_paths(mlflow_store, parent.info.run_id)


def test_progress_bar_on_a_terminal(tmp_path):
    """With stderr on a terminal the runs show as a tqdm bar (done/total, ETA) and each run's
    line above it without the plain lines' elapsed/eta."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([python(), "rl/evaluate.py", "--network", str(NETWORK), "--scenarios",
                             str(CONFIG_FILES["scenarios"]), "--scenario", "small_light", "--controllers",
                             "fixed,max_pressure", "--repeats", "1", "--end-time", "300", "--workers", "2", "--no-mlflow",
                             "--output-dir", str(tmp_path / "eval")],
                            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary,
                            env=subprocess_env())
    os.close(secondary)
    chunks, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:  # until every holder of the terminal closed it
        if select.select([primary], [], [], 1.0)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not data:
                break
            chunks.append(data)
    os.close(primary)
    stdout = proc.communicate(timeout=60)[0].decode()
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    assert "max_pressure" in stdout
    assert re.search(r"evaluation: 100%\|[^|]*\| 2/2 \[", err), err[-2000:]
    lines = re.findall(r"\[(\d)/2\] small_light/(\w+)/rep0: mean travel time [\d.]+ s \(all trips [\d.]+ s\) "
                       r"in [\d.]+ s\s*$", err.replace("\r", "\n"), flags=re.M)
    assert sorted(done for done, _ in lines) == ["1", "2"] and {c for _, c in lines} == {"fixed", "max_pressure"}
    assert not re.search(r"elapsed \d+ s, eta", err)  # the bar shows them


def load_cli():
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO_ROOT / "rl" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_errors_are_one_line(scenarios_file, tmp_path, mlflow_store, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  - name: x\n    num_vehicles: 10\n    grid_dimension: 4\n")
    common = ["--network", str(NETWORK), "--end-time", str(END_TIME), "--no-mlflow", "--output-dir", str(tmp_path / "out")]
    cli = load_cli()
    for args, needle in (
        (["--scenarios", str(scenarios_file), "--controllers", "fixed,bogus"], "bogus"),
        (["--scenarios", str(scenarios_file), "--controllers", "fixed,rl"], "--model"),
        (["--scenarios", str(scenarios_file), "--controllers", "rl", "--model", str(tmp_path / "missing.zip")], "missing.zip"),
        (["--scenarios", str(scenarios_file), "--controllers", "rl", "--model", "models:/no_such_model/3"], "no_such_model"),
        (["--scenarios", str(bad)], "grid_dimension"),
        (["--scenarios", str(tmp_path / "nope.yaml")], "nope.yaml"),
        (["--scenarios", str(scenarios_file), "--scenario", "not_there"], "not_there"),
        (["--scenarios", str(scenarios_file), "--repeats", "0"], "--repeats"),
    ):
        try:
            code = cli.main([*common, *args])
        except SystemExit as exit_:  # argparse's own checks
            code = exit_.code
        assert code == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (args, err)
        assert not (tmp_path / "out").exists()  # nothing started
    with pytest.raises(EvaluationError, match="--net-file"):
        evaluate_controllers(None, None, ["fixed"], net_file=tmp_path / "none.net.xml", route_files=[bad],
                             out_dir=tmp_path / "out")
    proc = run_script([*common, "--scenarios", str(scenarios_file), "--controllers", "fixed,teleport"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "teleport" in proc.stderr
