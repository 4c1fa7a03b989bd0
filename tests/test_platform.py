"""The training platform as users run it: scripts, MLflow store, registry resume, MLproject, SLURM."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO_ROOT, artifact_paths, python, subprocess_env

CONFIGS = "rl/configs"
QUICK = [
    "--network", f"{CONFIGS}/network/grid3_small.yaml",
    "--algorithm", f"{CONFIGS}/algorithm/ppo_small.yaml",
    "--reward", f"{CONFIGS}/reward/empirical.yaml",
    "--execution", f"{CONFIGS}/execution/quick_test.yaml",
    "--end-time", "360", "--n-steps", "16", "--batch-size", "16", "--checkpoint-freq", "32",
]


def write_scenarios(path: Path, scenarios) -> Path:
    path.write_text(yaml.safe_dump({"scenarios": scenarios}, sort_keys=False))
    return path


def scenario(name, vehicles, seed, routing):
    return {"name": name, "num_vehicles": vehicles, "private_traffic_seed": seed, "public_traffic_seed": seed + 1,
            "routing_strategy": routing}


def train(script: str, args, store: str, models: Path, **env: str) -> subprocess.CompletedProcess:
    """A training script with the quick settings on the store `store` (`env`: more variables)."""
    proc = subprocess.run([python(), script, *QUICK, *args, "--models-dir", str(models)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=subprocess_env(MLFLOW_TRACKING_URI=store, **env))
    return proc


def run_of(store: str, run_id: str):
    return MlflowClient(tracking_uri=store).get_run(run_id)


def run_id_from(output: str) -> str:
    return re.search(r"MLflow run ([0-9a-f]{32})", output).group(1)


@pytest.fixture(scope="module")
def batch_one(tmp_path_factory):
    """The server script, two scenarios in two processes, tracked in a fresh store."""
    root = tmp_path_factory.mktemp("platform")
    store = f"sqlite:///{root / 'mlflow.db'}"
    scenarios = write_scenarios(root / "batch1.yaml", [scenario("b1_shortest", 150, 31, "shortest 100"),
                                                      scenario("b1_realtime", 260, 32, "realtime 100")])
    proc = train("rl/server/train.py", ["--scenarios", str(scenarios), "--timesteps", "64", "--parallel-envs", "2",
                                        "--model-name", "tiny_policy"], store, root / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, store, run_id_from(proc.stdout), proc


def test_server_run_is_tracked_with_config_metrics_and_model(batch_one):
    root, store, run_id, proc = batch_one
    run = run_of(store, run_id)
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["n_steps"] == "16" and params["end_time"] == "360"
    assert tags["scenarios"] == "b1_shortest,b1_realtime" and tags["batch"] == "batch1"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git_commit"])
    metrics = run.data.metrics
    assert "train/learning_rate" in metrics and "rollout/ep_rew_mean" in metrics
    assert metrics["scenario/b1_shortest/vehicles_arrived"] != metrics["scenario/b1_realtime/vehicles_arrived"]
    history = MlflowClient(tracking_uri=store).get_metric_history(run_id, "scenario/b1_realtime/mean_travel_time")
    assert len(history) >= 2  # one value per finished episode, over steps
    artifacts = artifact_paths(store, run_id)
    for expected in ("config/resolved_config.yaml", "config/scenarios.yaml", "model/final_model.zip",
                     "checkpoints/model_32_steps.zip", "network/network.net.xml"):
        assert expected in artifacts, sorted(artifacts)
    assert {p for p in artifacts if p.startswith("config/source/")} >= {
        "config/source/network/grid3_small.yaml", "config/source/scenarios/batch1.yaml"}
    version = MlflowClient(tracking_uri=store).get_model_version("tiny_policy", "1")
    assert version.run_id == run_id


def test_mlflow_ui_reads_it_as_model_training(batch_one):
    """MLflow 3's UI: the experiment is model training with a description, the run lists the
    scenario list as its dataset, the registered model says what it controls, and the pyfunc
    model has a signature (typed predict: no advice printed at registration)."""
    import mlflow

    root, store, run_id, proc = batch_one
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    described = ("network grid3_small (9 signals, up to 2 phases): cycle_splits control, network policy, "
                 "observation size 232, action size 18")
    assert described in experiment.tags["mlflow.note.content"]
    assert described in client.get_registered_model("tiny_policy").description
    assert described in client.get_model_version("tiny_policy", "1").description
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "batch1" and dataset.dataset.digest
    assert {t.key: t.value for t in dataset.tags} == {"mlflow.data.context": "training"}
    assert str(root / "batch1.yaml") in dataset.dataset.source
    assert sorted(json.loads(dataset.dataset.schema)["mlflow_colspec"][k]["name"] for k in range(5)) == sorted(
        ["name", "num_vehicles", "private_traffic_seed", "public_traffic_seed", "routing_strategy"])
    mlflow.set_tracking_uri(store)
    signature = mlflow.models.get_model_info(run.data.tags["policy_model_uri"]).signature
    assert list(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 232]
    assert list(signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 18]
    # the logged model's own files: the policy travels inside the pickled model, no `artifacts/artifacts/`
    model_files = {Path(f.path).name for f in mlflow.artifacts.list_artifacts(run.data.tags["policy_model_uri"])}
    assert {"MLmodel", "python_model.pkl"} <= model_files and "artifacts" not in model_files, model_files
    served = mlflow.pyfunc.load_model(run.data.tags["policy_model_uri"])
    assert served.predict(np.zeros((2, 232), dtype=np.float32)).shape == (2, 18)
    assert "Add type hints" not in proc.stderr and "input example" not in proc.stderr
    assert run.data.tags["registered_version"] == "1" and run.data.tags["registered_model"] == "tiny_policy"
    assert run.data.tags["mlflow.note.content"].startswith("Batch batch1 (index 0) on b1_shortest, b1_realtime")


def test_server_envs_ran_their_own_scenarios(batch_one):
    root, store, run_id, proc = batch_one
    folder = Path(run_of(store, run_id).data.tags["model_dir"])
    assert (folder / "final_model.zip").is_file() and (folder / "resolved_config.yaml").is_file()
    assert (folder / "network" / "network.net.xml").is_file() and any((folder / "checkpoints").iterdir())
    shortest = (folder / "envs" / "00_b1_shortest" / "routes.rou.xml").read_text()
    realtime = (folder / "envs" / "01_b1_realtime" / "routes.rou.xml").read_text()
    assert shortest.count("<vehicle ") == 150 and realtime.count("<vehicle ") == 260
    assert "device.rerouting.period" not in shortest and "device.rerouting.period" in realtime
    # SUMO's own trip records of each env's last episode: its vehicles, its routing
    import xml.etree.ElementTree as ET

    trips = {name: list(ET.parse(folder / "envs" / name / "last_episode" / "tripinfo.xml").getroot().iter("tripinfo"))
             for name in ("00_b1_shortest", "01_b1_realtime")}
    assert all(t.get("id").startswith("veh_") for t in trips["00_b1_shortest"])
    assert 100 < len(trips["00_b1_shortest"]) <= 150 < len(trips["01_b1_realtime"]) <= 260
    assert not any("routing" in t.get("devices", "") for t in trips["00_b1_shortest"])
    assert all("routing" in t.get("devices", "") for t in trips["01_b1_realtime"])


def test_resume_from_registered_model_continues_and_links_runs(batch_one, tmp_path):
    root, store, first_run, _ = batch_one
    scenarios = write_scenarios(tmp_path / "batch2.yaml", [scenario("b2_mixed", 200, 41, "shortest 50 realtime 50")])
    proc = train("rl/server/train.py", ["--scenarios", str(scenarios), "--timesteps", "32", "--model-name", "tiny_policy",
                                        "--resume-from", "models:/tiny_policy/1"], store, root / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = run_of(store, run_id_from(proc.stdout))
    assert second.data.tags["resumed_from"] == "models:/tiny_policy/1"
    assert second.data.tags["resumed_from_run_id"] == first_run
    assert "steps 64 -> 96" in proc.stdout
    assert MlflowClient(tracking_uri=store).get_model_version("tiny_policy", "2").run_id == second.info.run_id


def test_resume_from_alias_and_runs_uri(batch_one, tmp_path):
    root, store, first_run, _ = batch_one
    from src.tracking.registry import resolve_model_uri

    MlflowClient(tracking_uri=store).set_registered_model_alias("tiny_policy", "champion", "1")
    by_alias = resolve_model_uri("models:/tiny_policy@champion", store)
    by_run = resolve_model_uri(f"runs:/{first_run}/model/final_model.zip", store)
    assert by_alias.run_id == by_run.run_id == first_run
    assert by_alias.local_path.read_bytes() == by_run.local_path.read_bytes()


def test_user_errors_are_one_line(batch_one, tmp_path):
    root, store, _, _ = batch_one
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  - name: x\n    num_vehicles: 10\n    grid_dimension: 4\n")
    bigger = tmp_path / "grid4.yaml"
    bigger.write_text((REPO_ROOT / CONFIGS / "network/grid3_small.yaml").read_text().replace("grid_dimension: 3", "grid_dimension: 4"))
    runs_before = len(MlflowClient(tracking_uri=store).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=store).search_experiments()]))
    for args, needle in (
        (["--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml", "--network", str(bigger),
          "--resume-from", "models:/tiny_policy/1"], "observation size"),
        (["--scenarios", str(bad)], "grid_dimension"),
        (["--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml", "--resume-from", "models:/no_such_model/3"], "no_such_model"),
        (["--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml", "--resume-from", str(tmp_path / "missing.zip")], "missing.zip"),
    ):
        proc = train("rl/local/train.py", [*args, "--timesteps", "16"], store, tmp_path / "models")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
        assert len(error_lines) == 1 and needle in error_lines[0], proc.stderr[-2000:]
    runs_after = len(MlflowClient(tracking_uri=store).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=store).search_experiments()]))
    assert runs_after == runs_before  # refused before any run or training started


def test_local_script_trains_first_scenario_in_one_env(tmp_path, mlflow_store):
    proc = train("rl/local/train.py", ["--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml", "--timesteps", "16"],
                 mlflow_store, tmp_path / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_of(mlflow_store, run_id_from(proc.stdout))
    assert run.data.tags["scenarios"] == "small_shortest" and run.data.tags["mode"] == "local"
    assert "mlflow ui --backend-store-uri" in proc.stdout


def test_mlflow_run_local_entry_point_logs_values_that_ran(tmp_path, mlflow_store):
    """`mlflow run` without --experiment-name: training lands in the network's experiment under
    our run name, and no param is an empty string (overrides are extra params)."""
    mlflow_bin = Path(python()).with_name("mlflow")
    proc = subprocess.run(
        [str(mlflow_bin), "run", ".", "-e", "local", "--env-manager", "local",
         "-P", "execution=rl/configs/execution/quick_test.yaml", "-P", "timesteps=16", "-P", "end_time=360",
         "-P", "model_name=mlproject_policy", "-P", "models_dir=" + str(tmp_path / "models")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_store,  # as with the venv activated
                           PATH=f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name("grid3_small")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.info.run_name == "small_mixed_b0_0-32"  # batch, then the steps it really covered (a full rollout)
    params = run.data.params
    assert "" not in params.values(), {k: v for k, v in params.items() if v == ""}
    assert params["total_timesteps"] == "16" and params["end_time"] == "360"
    assert params["eval_freq"] == "0" and params["model_name"] == "mlproject_policy"  # quick_test.yaml, the -P value
    launcher = client.get_run(run.data.tags["launcher_run_id"])
    assert launcher.info.experiment_id == "0" and launcher.data.tags["training_run_id"] == run.info.run_id
    assert "" not in launcher.data.params.values() and launcher.data.params["timesteps"] == "16"
    assert "model/final_model.zip" in artifact_paths(mlflow_store, run.info.run_id)
    assert client.get_model_version("mlproject_policy", "1").run_id == run.info.run_id


def test_slurm_script_is_valid_bash():
    for script in ("rl/server/train_rl.slurm", "rl/server/submit_chain.sh"):
        assert subprocess.run(["bash", "-n", script], cwd=REPO_ROOT).returncode == 0
    text = (REPO_ROOT / "rl/server/train_rl.slurm").read_text()
    for variable in ("RESUME_FROM", "TIMESTEPS", "JOB_NAME", "SCENARIOS", "--dependency=afterok"):
        assert variable in text


def test_torch_index_is_a_make_choice_and_empty_leaves_pip_alone(tmp_path):
    """README "Which torch": TORCH_INDEX reaches pip as an extra index; unset, pip's own
    configuration decides (what `make setup` would run, printed by `make -n`, nothing installed)."""
    def install_line(*variables: str) -> str:
        proc = subprocess.run(["make", "-n", "-B", "setup", f"VENV={tmp_path / 'venv'}", *variables], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60, env=subprocess_env(TORCH_INDEX=""))
        assert proc.returncode == 0, proc.stderr
        return next(line for line in proc.stdout.splitlines() if "install" in line and ".[test]" in line)

    assert "--extra-index-url" not in install_line()
    cpu = "https://download.pytorch.org/whl/cpu"
    assert install_line(f"TORCH_INDEX={cpu}").endswith(f"--extra-index-url {cpu}")


def test_legacy_experiment_file_trains(tmp_path, mlflow_store):
    proc = subprocess.run(
        [python(), "scripts/train_rl_production.py", "--experiment", "experiments/throughput_focused.yaml",
         "--timesteps", "16", "--n-steps", "16", "--batch-size", "16", "--end-time", "360", "--eval-freq", "0",
         "--models-dir", str(tmp_path / "models")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_store))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_of(mlflow_store, run_id_from(proc.stdout))
    assert run.data.params["reward_function"] == "throughput"  # from the child file
    assert run.data.params["grid_dimension"] == "4"  # inherited from baseline.yaml


def test_sigterm_saves_checkpoint_and_closes_run(tmp_path, mlflow_store):
    import signal
    import time

    proc = subprocess.Popen(
        [python(), "rl/server/train.py", *QUICK, "--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml",
         "--timesteps", "100000", "--parallel-envs", "1", "--checkpoint-freq", "100000", "--models-dir", str(tmp_path / "m")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_store))
    lines = []
    deadline = time.time() + 300
    for line in proc.stdout:  # wait until training really runs
        lines.append(line)
        if "episode done" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    output = "".join(lines) + out
    assert proc.returncode == 3, output[-3000:]  # interrupted: the SLURM script and chains read this
    run = run_of(mlflow_store, run_id_from(output))
    assert run.info.status == "KILLED" and run.data.tags["interrupted"] == "True"
    checkpoints = [p for p in artifact_paths(mlflow_store, run.info.run_id) if p.startswith("checkpoints/")]
    assert len(checkpoints) == 1 and "model/final_model.zip" in artifact_paths(mlflow_store, run.info.run_id)


def test_every_metric_sb3_records_reaches_mlflow_exactly_once(batch_one):
    """progress.csv (SB3's own record) and MLflow's metric history agree point by point."""
    import csv
    import math

    root, store, run_id, _ = batch_one
    run = run_of(store, run_id)
    rows = list(csv.DictReader(open(Path(run.data.tags["model_dir"]) / "progress.csv")))
    client = MlflowClient(tracking_uri=store)
    assert "train/approx_kl" in rows[0]  # an np.float32 in SB3
    for key in rows[0]:
        expected = [(int(r["time/total_timesteps"]), float(r[key])) for r in rows if r[key] != ""]
        expected = [(step, value) for step, value in expected if math.isfinite(value)]
        got = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert len(got) == len(expected), (key, got, expected)
        for (step, value), (got_step, got_value) in zip(expected, got):
            assert got_step == step and math.isclose(got_value, value, rel_tol=1e-6, abs_tol=1e-9), key
    assert client.get_metric_history(run_id, "train/approx_kl")
    # one value per finished episode of each scenario, never two at one step
    history = client.get_metric_history(run_id, "scenario/b1_shortest/mean_travel_time")
    assert len({m.step for m in history}) == len(history) >= 2


def test_server_run_params_say_how_it_ran(batch_one):
    root, store, run_id, _ = batch_one
    params = run_of(store, run_id).data.params
    assert params["single_env"] == "False"  # one process per scenario
    assert params["models_dir"] == str(root / "models") and params["model_name"] == "tiny_policy"
    assert "" not in params.values()


def test_chain_batch_resumes_from_the_previous_batch_and_refuses_a_gap(batch_one, tmp_path):
    root, store, first_run, _ = batch_one
    first = run_of(store, first_run)
    chain_id = first.data.tags["chain_id"]
    assert first.data.tags["batch_index"] == "0"
    client = MlflowClient(tracking_uri=store)
    done = [client.get_model_version("tiny_policy", v.version) for v in client.search_model_versions("name='tiny_policy'")]
    done = [v for v in done if v.tags.get("chain_id") == chain_id and v.tags.get("interrupted") == "false"]
    last = max(done, key=lambda v: (int(v.tags["batch_index"]), int(v.version)))  # other tests may extend the chain
    k = int(last.tags["batch_index"]) + 1
    scenarios = write_scenarios(tmp_path / "batch2.yaml", [scenario("b2_mixed", 200, 41, "shortest 50 realtime 50")])
    chain = ["--scenarios", str(scenarios), "--timesteps", "32", "--model-name", "tiny_policy", "--chain-id", chain_id]
    gap = train("rl/server/train.py", [*chain, "--batch-index", str(k + 1)], store, root / "models")
    assert gap.returncode == 2 and f"batch {k} has no complete version" in gap.stderr, gap.stderr[-2000:]
    proc = train("rl/server/train.py", [*chain, "--batch-index", str(k)], store, root / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_of(store, run_id_from(proc.stdout))
    assert run.data.tags["resumed_from"] == f"models:/tiny_policy/{last.version}"
    assert run.data.tags["resumed_from_run_id"] == last.run_id and run.data.tags["batch_index"] == str(k)
    version = client.get_model_version("tiny_policy", run.data.tags["registered_version"])
    assert version.tags["chain_id"] == chain_id and version.tags["parent_version"] == str(last.version)
    assert client.get_model_version_by_alias("tiny_policy", "chain-" + chain_id).version == version.version
    again = train("rl/server/train.py", [*chain, "--batch-index", str(k)], store, root / "models")
    assert again.returncode == 0 and "is already complete" in again.stdout, again.stderr[-2000:]


def test_resume_applies_the_new_ppo_settings_and_refuses_a_new_net_arch(batch_one, tmp_path):
    root, store, _, _ = batch_one
    algorithm = yaml.safe_load((REPO_ROOT / CONFIGS / "algorithm/ppo_small.yaml").read_text())
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**algorithm, "gamma": 0.9, "clip_range": 0.1}))
    args = ["--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml", "--timesteps", "16", "--model-name", "tiny_policy",
            "--resume-from", "models:/tiny_policy/1", "--algorithm", str(changed)]
    proc = train("rl/local/train.py", args, store, tmp_path / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_of(store, run_id_from(proc.stdout))
    assert run.data.params["gamma"] == "0.9" and run.data.params["clip_range"] == "0.1"
    from stable_baselines3 import PPO

    model = PPO.load(Path(run.data.tags["model_dir"]) / "final_model.zip")
    assert model.gamma == 0.9 and model.clip_range(1.0) == 0.1  # what ran is what the params say

    wider = tmp_path / "wider.yaml"
    wider.write_text(yaml.safe_dump({**algorithm, "net_arch": [8, 8]}))
    before = set((tmp_path / "models").iterdir())
    proc = train("rl/local/train.py", [*args[:-1], str(wider)], store, tmp_path / "models")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [l for l in proc.stderr.splitlines() if l.startswith("error:")][0].count("net_arch cannot change") == 1
    assert set((tmp_path / "models").iterdir()) == before  # no folder left


def test_no_mlflow_trains_through_the_null_tracker(tmp_path):
    store = tmp_path / "never.db"
    proc = train("rl/local/train.py", ["--scenarios", f"{CONFIGS}/scenarios/small_mixed.yaml", "--timesteps", "16",
                                       "--no-mlflow"], f"sqlite:///{store}", tmp_path / "models")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = next((tmp_path / "models").iterdir())
    assert (folder / "final_model.zip").is_file() and (folder / "progress.csv").read_text().count("\n") >= 2
    assert "MLflow run" not in proc.stdout and not store.exists()
