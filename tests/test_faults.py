"""Faults as a cluster delivers them, done for real: job-wide SIGTERM, kill -9 and SIGSTOP of
an env worker, a full disk, many jobs on a new store. Each test runs the real training script
(real SUMO, real PPO, a real MLflow store in a temp folder) and reads what it left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import List, Optional

import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO_ROOT, artifact_paths, process_children, python, subprocess_env
from test_platform import QUICK, run_id_from, run_of, scenario, write_scenarios

#: 64 characters: SB3's console table used to cut keys at 36 and crash on the clash.
LONG_NAME = "realtime_scenario_with_a_long_descriptive_name_of_64_characters_"
TWO_SCENARIOS = [scenario("f_shortest", 150, 31, "shortest 100"), scenario(LONG_NAME, 200, 32, "realtime 100")]


def execution_file(folder: Path, **keys) -> Path:
    """quick_test.yaml with `keys` changed (step timeout, restarts, ...)."""
    data = yaml.safe_load((REPO_ROOT / "rl/configs/execution/quick_test.yaml").read_text())
    data.update(keys)
    path = folder / "execution.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Training:
    """The server script in its own session (its own process group, like a SLURM job)."""

    def __init__(self, tmp_path: Path, store: str, args: List[str], scenarios=TWO_SCENARIOS) -> None:
        files = write_scenarios(tmp_path / "scenarios.yaml", scenarios)
        self.proc = subprocess.Popen(
            [python(), "rl/server/train.py", *QUICK, "--scenarios", str(files), "--parallel-envs", "2",
             "--models-dir", str(tmp_path / "models"), *args],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env=subprocess_env(MLFLOW_TRACKING_URI=store))
        self.lines: List[str] = []

    def wait_for(self, needle: str, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        for line in self.proc.stdout:
            self.lines.append(line)
            if needle in line:
                return
            if time.time() > deadline:
                break
        raise AssertionError(f"{needle!r} never printed:\n" + "".join(self.lines[-40:]))

    def finish(self, timeout: float = 300) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        self.lines.append(out)
        return "".join(self.lines)

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def env_workers(self) -> List[int]:
        """PIDs of the env worker processes: grandchildren through the forkserver."""
        children = process_children()
        return sorted(pid for child in children.get(self.proc.pid, []) for pid in children.get(child, []))


def version_of(store: str, run_id: str):
    versions = MlflowClient(tracking_uri=store).search_model_versions("name='grid3_small'")
    found = next(v for v in versions if v.run_id == run_id)
    return MlflowClient(tracking_uri=store).get_model_version("grid3_small", found.version)  # with its tags


def model_counters(path: Path) -> dict:
    """num_timesteps and _n_updates as SB3 saved them."""
    import json

    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    return {"num_timesteps": data["num_timesteps"], "n_updates": data["_n_updates"], "n_epochs": data["n_epochs"]}


def test_job_wide_sigterm_saves_registers_and_the_requeued_batch_finishes_its_steps(tmp_path, mlflow_store):
    """scancel / preemption: every process of the job gets SIGTERM at once. The same batch
    started again (a requeue) resumes its own interrupted version and trains only what is left."""
    job = Training(tmp_path, mlflow_store, ["--timesteps", "192", "--checkpoint-freq", "100000"])
    job.wait_for("approx_kl")  # 64 steps collected, the second update under way
    job.signal_group(signal.SIGTERM)
    output = job.finish()
    assert job.proc.returncode == 3, output[-3000:]
    assert "EOFError" not in output and "Traceback" not in output
    run = run_of(mlflow_store, run_id_from(output))
    assert run.info.status == "KILLED" and run.data.tags["interrupted"] == "True"
    version = version_of(mlflow_store, run.info.run_id)
    assert version.tags["interrupted"] == "true" and version.tags["batch_target_steps"] == "192"
    checkpoints = [p for p in artifact_paths(mlflow_store, run.info.run_id) if p.startswith("checkpoints/model_")]
    assert len(checkpoints) == 1
    # counted == trained: the counter was rolled back to the last update
    counters = model_counters(Path(run.data.tags["model_dir"]) / "final_model.zip")
    rollout = 16 * 2
    assert counters["num_timesteps"] == counters["n_updates"] // counters["n_epochs"] * rollout
    assert version.tags["steps"] == str(counters["num_timesteps"]) and 64 <= counters["num_timesteps"] < 192

    chain = ["--chain-id", run.data.tags["chain_id"], "--batch-index", "0", "--timesteps", "192"]
    (tmp_path / "again").mkdir()
    requeued = Training(tmp_path / "again", mlflow_store, chain)
    output = requeued.finish()
    assert requeued.proc.returncode == 0, output[-3000:]
    second = run_of(mlflow_store, run_id_from(output))
    assert second.data.tags["start_steps"] == version.tags["steps"]
    assert second.data.tags["resumed_from"] == f"models:/grid3_small/{version.version}"
    assert second.info.run_name == f"scenarios_b0_{version.tags['steps']}-192"
    finished = version_of(mlflow_store, second.info.run_id)
    assert finished.tags["steps"] == "192" and finished.tags["interrupted"] == "false"
    assert finished.tags["parent_version"] == str(version.version)
    alias = MlflowClient(tracking_uri=mlflow_store).get_model_version_by_alias(
        "grid3_small", "chain-" + run.data.tags["chain_id"])
    assert alias.version == finished.version

    (tmp_path / "third").mkdir()
    again = Training(tmp_path / "third", mlflow_store, chain)
    output = again.finish()
    assert again.proc.returncode == 0 and "is already complete" in output, output[-2000:]


def test_killed_worker_is_restarted_and_training_finishes(tmp_path, mlflow_store):
    job = Training(tmp_path, mlflow_store, ["--timesteps", "192", "--checkpoint-freq", "1000"])
    job.wait_for("episode done")
    workers = job.env_workers()
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    output = job.finish()
    assert job.proc.returncode == 0, output[-3000:]
    assert "restarting it (restart 1 of at most 3)" in output
    run = run_of(mlflow_store, run_id_from(output))
    assert run.info.status == "FINISHED" and run.data.metrics["faults/env_restarts"] == 1
    assert f"scenario/{LONG_NAME}/mean_travel_time" in run.data.metrics  # the full name, in MLflow
    assert version_of(mlflow_store, run.info.run_id).tags["interrupted"] == "false"


def test_stuck_worker_times_out_and_is_restarted(tmp_path, mlflow_store):
    execution = execution_file(tmp_path, env_step_timeout_s=4)
    job = Training(tmp_path, mlflow_store, ["--timesteps", "192", "--execution", str(execution)])
    job.wait_for("episode done")
    os.kill(job.env_workers()[1], signal.SIGSTOP)
    output = job.finish()
    assert job.proc.returncode == 0, output[-3000:]
    assert "no answer within 4 s" in output
    assert run_of(mlflow_store, run_id_from(output)).data.params["env_step_timeout_s"] == "4.0"


def test_sigterm_while_a_worker_is_stuck_still_saves_within_slurm_kill_wait(tmp_path, mlflow_store):
    job = Training(tmp_path, mlflow_store, ["--timesteps", "100000", "--checkpoint-freq", "100000"])
    job.wait_for("episode done")
    os.kill(job.env_workers()[0], signal.SIGSTOP)
    time.sleep(1)
    started = time.monotonic()
    job.signal_group(signal.SIGTERM)
    output = job.finish(timeout=120)
    took = time.monotonic() - started
    assert job.proc.returncode == 3, output[-3000:]
    # a hang detector, not a speed test: about 12 s on an idle 2-core machine (SLURM's KillWait is 30 s)
    assert took < 90, f"took {took:.0f} s after SIGTERM"
    run = run_of(mlflow_store, run_id_from(output))
    assert run.info.status == "KILLED" and version_of(mlflow_store, run.info.run_id).tags["interrupted"] == "true"


def test_too_many_worker_failures_end_failed_with_an_emergency_checkpoint(tmp_path, mlflow_store):
    execution = execution_file(tmp_path, max_env_restarts=0)
    job = Training(tmp_path, mlflow_store, ["--timesteps", "100000", "--execution", str(execution)])
    job.wait_for("episode done")
    os.kill(job.env_workers()[0], signal.SIGKILL)
    output = job.finish()
    assert job.proc.returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "failed 1 times" in errors[0] and "max_env_restarts is 0" in errors[0]
    run = run_of(mlflow_store, run_id_from(output))
    assert run.info.status == "FAILED"
    version = version_of(mlflow_store, run.info.run_id)
    assert version.tags["interrupted"] == "true" and "max_env_restarts" in version.tags["failure"]
    assert any(p.startswith("checkpoints/model_") for p in artifact_paths(mlflow_store, run.info.run_id))


def test_sigterm_right_after_the_run_opens_ends_it_killed(tmp_path, mlflow_store):
    job = Training(tmp_path, mlflow_store, ["--timesteps", "100000"])
    job.wait_for("MLflow run")
    job.signal_group(signal.SIGTERM)
    output = job.finish()
    assert job.proc.returncode == 3, output[-3000:]
    assert run_of(mlflow_store, run_id_from(output)).info.status == "KILLED"


def test_an_error_after_the_run_opens_ends_it_failed(tmp_path, mlflow_store, monkeypatch):
    """A crash between opening the run and training (here: the env cannot be built) is FAILED."""
    import argparse

    from src.rl import pipeline, train_args

    def broken(*args, **kwargs):
        raise RuntimeError("SUMO could not start")

    monkeypatch.setattr(pipeline, "train_rl_policy", broken)
    parser = argparse.ArgumentParser()
    train_args.add_common_arguments(parser)
    files = write_scenarios(tmp_path / "s.yaml", TWO_SCENARIOS[:1])
    args = parser.parse_args([*QUICK, "--scenarios", str(files), "--models-dir", str(tmp_path / "m")])
    with pytest.raises(RuntimeError):
        pipeline.run_training(args, "local")
    client = MlflowClient(tracking_uri=mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("grid3_small").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_checkpoint_on_a_full_disk_leaves_no_corrupt_file(tmp_path):
    """A real full disk: a 64 KiB tmpfs. The save fails; nothing stands under the model's name."""
    from stable_baselines3 import PPO

    from src.rl.utils import save_model_atomically

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, policy_kwargs={"net_arch": [256, 256]})
        with pytest.raises(OSError):
            save_model_atomically(model, disk / "model_96_steps.zip", {"num_timesteps": 96})
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_four_jobs_on_a_new_store_and_two_runs_in_one_second(tmp_path):
    """Four processes open a new SQLite store at once (MLflow's migration would clash), and two
    trainings started together get their own model folders."""
    store = f"sqlite:///{tmp_path / 'new.db'}"
    opener = ("import sys; from src.tracking.run import TrainingRun; "
              "r = TrainingRun('parallel', run_name=sys.argv[1]); r.log_params({'job': sys.argv[1]}); r.end()")
    procs = [subprocess.Popen([python(), "-c", opener, f"job{k}"], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env(MLFLOW_TRACKING_URI=store)) for k in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e[-1500:] for e in errors]
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert sorted(r.data.params["job"] for r in runs) == ["job0", "job1", "job2", "job3"]

    files = write_scenarios(tmp_path / "one.yaml", TWO_SCENARIOS[:1])
    trainings = [subprocess.Popen([python(), "rl/local/train.py", *QUICK, "--scenarios", str(files), "--timesteps", "16",
                                   "--models-dir", str(tmp_path / "models")], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=subprocess_env(MLFLOW_TRACKING_URI=store))
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in trainings]
    assert [p.returncode for p in trainings] == [0, 0], [o[-2000:] for o in outputs]
    folders = {run_of(store, run_id_from(o)).data.tags["model_dir"] for o in outputs}
    assert len(folders) == 2 and all((Path(f) / "final_model.zip").is_file() for f in folders)


def test_mlflow_telemetry_is_off_in_our_processes():
    out = subprocess.run([python(), "-c", "import src, os; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"],
                         cwd=REPO_ROOT, capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "true"
