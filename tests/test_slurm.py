"""The cluster scripts on a real one-node SLURM (munged, slurmctld, slurmd in a temp folder).

Skipped unless the SLURM daemons are installed and we are root; under SLURM_TESTS_REQUIRED=1
(set by `.ci/run`, which installs slurm-wlm as root) a missing cluster is a failure, not a skip.
Every job is submitted from a folder outside the repository.

- A stand-in trainer (a few lines that record their arguments and signals) checks the scripts
  alone, in seconds: sizes set at submission, the repository found from anywhere, chain ids and
  batch indexes, afterok, exit codes, the USR1 requeue and scancel.
- The real trainer (tiny configs, an MLflow SQLite store in the temp folder) checks what the
  scripts are for: a two-batch chain whose second run resumes from the first's model, a scancel
  that leaves a checkpoint, a KILLED run and an interrupted version a resubmitted job continues
  from without lost steps, and a time-limit warning (USR1) that requeues the job until the
  batch's steps are done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import SlurmCluster, missing_tools

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER = REPO_ROOT / "rl" / "server"

MISSING = missing_tools()
#: `.ci/run` sets this where it can install slurm-wlm: these tests must run there, never skip.
REQUIRED = os.environ.get("SLURM_TESTS_REQUIRED") == "1"
WHY_NOT = f"no SLURM test cluster here (missing: {', '.join(MISSING)}; install slurm-wlm as root, as .ci/run does)"

pytestmark = pytest.mark.skipif(bool(MISSING) and not REQUIRED, reason=WHY_NOT)


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node SLURM in a temp folder; every job left over is cancelled and every daemon
    stopped at the end, also when a test failed."""
    if MISSING:  # only reached under SLURM_TESTS_REQUIRED=1
        pytest.fail(f"SLURM_TESTS_REQUIRED=1 but {WHY_NOT}", pytrace=False)
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=max(2, os.cpu_count() or 2))
    slurm.start()
    try:
        yield slurm
    finally:
        try:
            slurm.run(["scancel", "--full", "--user", "root"], check=False)
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                queue = slurm.run(["squeue", "--noheader", "--states=RUNNING,COMPLETING"], check=False).stdout
                if not queue.strip():
                    break
                time.sleep(1)
        finally:
            slurm.stop()


@pytest.fixture()
def outside(tmp_path) -> Path:
    """The submit directory: not the repository."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def output_of(job: dict) -> str:
    path = Path(job.get("StdOut", ""))
    return path.read_text(errors="replace") if path.is_file() else f"(no output file {path})"


def wait_for_line(path: Path, pattern: str, timeout: float, cluster: SlurmCluster, job_id: str) -> None:
    """Wait until the job's output has a line matching `pattern` (the job must still run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and re.search(pattern, path.read_text(errors="replace"), re.M):
            return
        info = cluster.job(job_id)
        if info.get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING"):
            pytest.fail(f"job {job_id} ended ({info.get('JobState')}) before printing {pattern!r}:\n{output_of(info)}")
        time.sleep(0.3)
    pytest.fail(f"job {job_id}: no {pattern!r} after {timeout}s:\n{output_of(cluster.job(job_id))}")


# ---------------------------------------------------------------- the scripts, stand-in trainer
STUB = r'''
import json, os, signal, sys, time
argv = sys.argv[1:]
batch = argv[argv.index("--batch-index") + 1] if "--batch-index" in argv else "-"
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
mode = os.environ.get(f"STUB_MODE_{batch}", os.environ.get("STUB_MODE", "exit:0"))
def note(event):
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(json.dumps({"job": os.environ.get("SLURM_JOB_ID"), "restart": restart, "batch": batch,
                            "event": event, "argv": argv, "cwd": os.getcwd(), "time": time.time()}) + "\n")
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
note("start")
if mode == "sleep" or (mode == "sleep_first" and restart == "0"):
    deadline = time.time() + 120
    while not stop and time.time() < deadline:
        time.sleep(0.1)
    note("TERM" if stop else "timeout")
    sys.exit(3 if stop else 1)
code = int(mode.split(":")[1]) if mode.startswith("exit:") else 0
note(f"exit {code}")
sys.exit(code)
'''


@pytest.fixture()
def stub_repo(tmp_path) -> Path:
    """A copy of the cluster scripts whose rl/server/train.py is a stand-in trainer."""
    repo = tmp_path / "stub repo"  # a space in the path on purpose
    (repo / "rl" / "server").mkdir(parents=True)
    for name in ("train_rl.slurm", "submit_chain.sh"):
        shutil.copy2(SERVER / name, repo / "rl" / "server" / name)
    (repo / "rl" / "server" / "train.py").write_text(STUB)
    (repo / ".venv").symlink_to(REPO_ROOT / ".venv")
    return repo


def stub_events(log: Path) -> list:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def wait_stub_started(log: Path, job_id: str, timeout: float = 60) -> None:
    """Until the stand-in trainer of `job_id` runs (its TERM handler is installed by then)."""
    deadline = time.monotonic() + timeout
    while not any(e["job"] == job_id and e["event"] == "start" for e in stub_events(log)):
        assert time.monotonic() < deadline, f"the stand-in trainer of job {job_id} never started"
        time.sleep(0.2)


def args_of(event: dict, flag: str):
    argv = event["argv"]
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_scripts_sizes_repository_and_chain_arguments(cluster, stub_repo, outside, tmp_path):
    """CPUs, memory and time set at submission (also through submit_chain.sh); the repository is
    found from any directory; chain id and batch index reach every job; RESUME_FROM only batch 0."""
    log = tmp_path / "stub.jsonl"
    (outside / "b1.yaml").write_text("scenarios: []\n")
    chain = cluster.run([str(stub_repo / "rl/server/submit_chain.sh"), "b1.yaml", str(outside / "b1.yaml"),
                         "--", "--end-time", "300", "--note", "two words"], cwd=outside,
                        env={"CPUS": "1", "MEM": "300M", "TIME": "7", "RESUME_FROM": "models:/seed/4",
                             "STUB_LOG": str(log), "MODEL_NAME": "stub_model"})
    jobs = re.findall(r"job (\d+) \(batch", chain.stdout)
    chain_id = re.search(r"^chain (\S+):", chain.stdout, re.M).group(1)
    assert len(jobs) == 2 and re.fullmatch(r"stub_model-\d{8}-\d{6}-[0-9a-f]{4}", chain_id), chain.stdout
    infos = [cluster.wait(job, 60) for job in jobs]
    for info in infos:
        assert info["JobState"] == "COMPLETED", output_of(info)
        assert (info["NumCPUs"], info["MinMemoryNode"], info["TimeLimit"]) == ("1", "300M", "00:07:00")
        assert Path(info["StdOut"]).parent == stub_repo / "rl" / "models"  # absolute, set by submit_chain.sh
    events = [e for e in stub_events(log) if e["event"] == "start"]
    assert [e["job"] for e in events] == jobs
    assert [args_of(e, "--batch-index") for e in events] == ["0", "1"]
    assert {args_of(e, "--chain-id") for e in events} == {chain_id}
    assert [args_of(e, "--resume-from") for e in events] == ["models:/seed/4", None]
    assert all(args_of(e, "--parallel-envs") == "1" for e in events)  # from the CPUs allocated
    assert all(e["argv"][-4:] == ["--end-time", "300", "--note", "two words"] for e in events)
    assert all(e["cwd"] == str(outside) for e in events)
    assert infos[1]["StartTime"] >= infos[0]["EndTime"]

    # sbatch by hand, a relative script path, no REPO_DIR: sizes on the sbatch line win
    script = os.path.relpath(stub_repo / "rl/server/train_rl.slurm", outside)
    job = cluster.sbatch(["--cpus-per-task=2", "--mem=200M", "--time=3", script], cwd=outside,
                         env={"STUB_LOG": str(log)})
    info = cluster.wait(job, 60)
    assert info["JobState"] == "COMPLETED", output_of(info)
    assert (info["NumCPUs"], info["MinMemoryNode"], info["TimeLimit"]) == ("2", "200M", "00:03:00")
    assert f"repository {stub_repo}," in output_of(info)
    alone = stub_events(log)[-1]
    assert alone["job"] == job
    assert args_of(alone, "--chain-id") == f"traffic-rl-testcluster-{job}" and args_of(alone, "--batch-index") == "0"
    assert args_of(alone, "--parallel-envs") == "2"

    # a missing scenarios file: one line, exit 2, nothing submitted
    before = cluster.run(["squeue", "--noheader", "--states=all", "--format=%i"]).stdout
    bad = cluster.run([str(stub_repo / "rl/server/submit_chain.sh"), "b1.yaml", "no_such.yaml"], cwd=outside,
                      check=False)
    assert bad.returncode == 2 and "no_such.yaml" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert cluster.run(["squeue", "--noheader", "--states=all", "--format=%i"]).stdout == before


def test_sweep_array_tasks_are_workers_of_one_study_and_scancel_stops_them(cluster, outside, tmp_path):
    """sweep.slurm as a job array, submitted from elsewhere: every task runs rl/sweep.py on the
    same study, budget and storage, seeded with its array index; scancel sends every worker TERM."""
    repo = tmp_path / "sweep_repo"
    (repo / "rl" / "server").mkdir(parents=True)
    shutil.copy2(SERVER / "sweep.slurm", repo / "rl" / "server" / "sweep.slurm")
    (repo / "rl" / "sweep.py").write_text(STUB)  # the stand-in records its arguments and signals
    (repo / ".venv").symlink_to(Path(sys.executable).parent.parent)  # this venv (a worktree has none of its own)
    (outside / "space.yaml").write_text("n_epochs: {type: int, low: 2, high: 4}\n")
    log = tmp_path / "stub.jsonl"
    script = os.path.relpath(repo / "rl/server/sweep.slurm", outside)
    env = {"STUB_LOG": str(log), "SPACE": "space.yaml", "TRIALS": "5"}
    job = cluster.sbatch(["--array=0-1", "--cpus-per-task=1", "--mem=200M", "--time=3", script, "--timesteps", "64"],
                         cwd=outside, env=env)
    for task in ("0", "1"):
        info = cluster.wait(f"{job}_{task}", 60)
        assert info["JobState"] == "COMPLETED", output_of(info)
    starts = [e for e in stub_events(log) if e["event"] == "start"]
    assert len(starts) == 2 and {args_of(e, "--sampler-seed") for e in starts} == {"0", "1"}
    for event in starts:
        assert event["argv"][0] == "space.yaml" and event["cwd"] == str(outside)
        assert (args_of(event, "--trials"), args_of(event, "--study")) == ("5", "space")
        assert args_of(event, "--storage") == f"journal://{repo}/rl/sweeps/space/study.journal"
        assert args_of(event, "--parallel-envs") == "1" and event["argv"][-2:] == ["--timesteps", "64"]

    job = cluster.sbatch(["--array=0-1", "--cpus-per-task=1", "--mem=200M", "--time=3", script], cwd=outside,
                         env={**env, "STUB_MODE": "sleep"})
    deadline = time.monotonic() + 60
    while len([e for e in stub_events(log) if e["event"] == "start"]) < 4:
        assert time.monotonic() < deadline, "the stand-in workers never started"
        time.sleep(0.2)
    cluster.run(["scancel", job])
    for task in ("0", "1"):
        assert cluster.wait(f"{job}_{task}", 60)["JobState"] == "CANCELLED"
    assert len([e for e in stub_events(log) if e["event"] == "TERM"]) == 2


def test_scripts_exit_codes_requeue_and_scancel(cluster, stub_repo, outside, tmp_path):
    """A failing batch stops the chain; the time-limit warning (USR1 to the batch shell) stops
    the trainer and requeues the same batch, its successor waits for it; scancel does not requeue."""
    log = tmp_path / "stub.jsonl"
    (outside / "b.yaml").write_text("scenarios: []\n")
    submit = [str(stub_repo / "rl/server/submit_chain.sh"), "b.yaml", "b.yaml"]
    small = {"CPUS": "1", "MEM": "100M", "STUB_LOG": str(log)}

    # batch 0 fails: exit code 1 is the job's, batch 1 never starts
    out = cluster.run(submit, cwd=outside, env={**small, "STUB_MODE_0": "exit:1"}).stdout
    first, second = re.findall(r"job (\d+) \(batch", out)
    info = cluster.wait(first, 60)
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "1:0"), output_of(info)
    assert cluster.wait(second, 30, states={"PENDING"})["Reason"] in ("DependencyNeverSatisfied", "Dependency")
    deadline = time.monotonic() + 20
    while cluster.job(second)["Reason"] != "DependencyNeverSatisfied" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cluster.job(second)["Reason"] == "DependencyNeverSatisfied"
    cluster.run(["scancel", second])

    # USR1 (what --signal=B:USR1@300 sends before the time limit): TERM to the trainer, exit 3,
    # requeue; the requeued batch finishes, then batch 1 runs
    out = cluster.run(submit, cwd=outside, env={**small, "STUB_MODE_0": "sleep_first"}).stdout
    first, second = re.findall(r"job (\d+) \(batch", out)
    wait_stub_started(log, first)
    cluster.run(["scancel", "--signal=USR1", "--batch", first])
    info = cluster.wait(first, 90, states={"COMPLETED", "FAILED", "CANCELLED"})
    assert (info["JobState"], info["Restarts"]) == ("COMPLETED", "1"), output_of(info)
    assert "requeueing job" in output_of(info)
    assert cluster.wait(second, 60)["JobState"] == "COMPLETED"
    runs = [(e["job"], e["restart"], e["event"]) for e in stub_events(log) if e["job"] in (first, second)]
    assert runs == [(first, "0", "start"), (first, "0", "TERM"), (first, "1", "start"), (first, "1", "exit 0"),
                    (second, "0", "start"), (second, "0", "exit 0")]

    # scancel: TERM to every process, the trainer stops (exit 3), no requeue
    job = cluster.sbatch(["--cpus-per-task=1", "--mem=100M", str(stub_repo / "rl/server/train_rl.slurm")], cwd=outside,
                         env={"STUB_LOG": str(log), "STUB_MODE": "sleep"})
    wait_stub_started(log, job)
    cluster.run(["scancel", job])
    info = cluster.wait(job, 60)
    assert (info["JobState"], info["Restarts"]) == ("CANCELLED", "0"), output_of(info)
    assert [e["event"] for e in stub_events(log) if e["job"] == job] == ["start", "TERM"]

    # TERM to the batch shell only (scancel --batch): forwarded to the trainer, its exit code 3 is the job's
    job = cluster.sbatch(["--cpus-per-task=1", "--mem=100M", str(stub_repo / "rl/server/train_rl.slurm")], cwd=outside,
                         env={"STUB_LOG": str(log), "STUB_MODE": "sleep"})
    wait_stub_started(log, job)
    cluster.run(["scancel", "--signal=TERM", "--batch", job])
    info = cluster.wait(job, 60)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("FAILED", "3:0", "0"), output_of(info)


# ----------------------------------------------------------------------- the real trainer
TINY = {
    "NETWORK": "rl/configs/network/grid3_small.yaml",  # relative: found in the repository
    "ALGORITHM": "rl/configs/algorithm/ppo_small.yaml",
    "REWARD": "rl/configs/reward/empirical.yaml",
    "EXECUTION": "rl/configs/execution/quick_test.yaml",
    "CPUS": "1", "MEM": "2G", "TIME": "30",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An MLflow SQLite store and a models folder for the real trainer's jobs."""
    root = tmp_path_factory.mktemp("tracking")
    return {"uri": f"sqlite:///{root / 'mlflow.db'}", "models": root / "models", "root": root}


def write_batch(folder: Path, name: str, seed: int, vehicles: int = 150) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"scenarios": [{
        "name": f"{name}_s", "num_vehicles": vehicles, "private_traffic_seed": seed, "public_traffic_seed": seed + 1,
        "routing_strategy": "shortest 100"}]}, sort_keys=False))
    return path


def job_env(store, **extra) -> dict:
    env = {**TINY, "MLFLOW_TRACKING_URI": store["uri"], **extra}
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env[key] = None  # not inherited from this process
    return env


def train_args(store) -> list:
    return ["--end-time", "300", "--models-dir", str(store["models"])]


def sbatch_trainer(cluster, store, outside, scenarios: Path, **env) -> str:
    """train_rl.slurm submitted by hand from `outside`, sizes on the sbatch line."""
    return cluster.sbatch(["--cpus-per-task=1", "--mem=2G", "--time=30", f"--job-name={scenarios.stem}",
                           str(SERVER / "train_rl.slurm"), *train_args(store)],
                          cwd=outside, env=job_env(store, SCENARIOS=str(scenarios), **env))


def chain_runs(store, chain_id: str) -> list:
    """The chain's runs, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.chain_id = '{chain_id}'", max_results=100)
    return sorted(runs, key=lambda r: r.info.start_time)


def chain_versions(store, model: str, chain_id: str) -> list:
    """The chain's registered versions, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    versions = [v for v in client.search_model_versions(f"name='{model}'") if v.tags.get("chain_id") == chain_id]
    return sorted(versions, key=lambda v: int(v.version))


def test_chain_of_two_batches_resumes_from_its_first_batch(cluster, store, outside):
    """submit_chain.sh with two batches from outside the repository: both COMPLETED, the second
    run resumed from the first's model (lineage tags), the chain alias on the second version."""
    batches = [write_batch(outside, "chain_b1", 31), write_batch(outside, "chain_b2", 41)]
    out = cluster.run([str(SERVER / "submit_chain.sh"), *[b.name for b in batches], "--", *train_args(store)],
                      cwd=outside, env=job_env(store, TIMESTEPS="64", MODEL_NAME="slurm_chain",
                                               LOG_DIR=str(store["root"] / "logs"))).stdout
    jobs = re.findall(r"job (\d+) \(batch", out)
    chain_id = re.search(r"^chain (\S+):", out, re.M).group(1)
    infos = [cluster.wait(job, 240) for job in jobs]
    for info in infos:
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), output_of(info)[-4000:]

    runs = chain_runs(store, chain_id)
    assert [r.data.tags.get("batch_index") for r in runs] == ["0", "1"], [r.data.tags for r in runs]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    first, second = runs
    assert second.data.tags["resumed_from_run_id"] == first.info.run_id
    assert second.data.tags["start_steps"] == "64"
    versions = chain_versions(store, "slurm_chain", chain_id)
    assert [(v.tags["batch_index"], v.tags["steps"], v.tags["interrupted"]) for v in versions] == \
        [("0", "64", "false"), ("1", "128", "false")]
    assert versions[1].tags["parent_version"] == str(versions[0].version)
    from mlflow import MlflowClient

    alias = "chain-" + re.sub(r"[^A-Za-z0-9_-]", "_", chain_id)
    assert str(MlflowClient(tracking_uri=store["uri"]).get_model_version_by_alias("slurm_chain", alias).version) \
        == str(versions[1].version)

    # nothing of MLflow's in the submit directory: where a job was submitted from must not decide
    # where the store keeps the chain's models (the next batch of the chain resumes from them)
    client = MlflowClient(tracking_uri=store["uri"])
    # (`Default` holds only `mlflow run` launcher runs, which write no artifacts)
    locations = {e.name: e.artifact_location for e in client.search_experiments() if e.name != "Default"}
    assert not (outside / "mlruns").exists() and not any(str(outside) in loc for loc in locations.values()), (
        f"artifacts went into the submit directory {outside}: {locations} (the store's experiments need an "
        "artifact location independent of the current directory, e.g. next to the SQLite file)")


def interrupted_then_continued(cluster, store, outside, name: str, signal_args: list, steps: int = 256):
    """Start a batch of `steps`, interrupt it mid-training with `scancel *signal_args`; returns
    (job id, job info after the interruption settles, chain id)."""
    scenarios = write_batch(outside, name, 51)
    chain_id = f"{name}-chain"
    job = sbatch_trainer(cluster, store, outside, scenarios, TIMESTEPS=str(steps), MODEL_NAME=name,
                         CHAIN_ID=chain_id, BATCH_INDEX="0")
    # mid-training: after PPO's first update table, well before the last step
    wait_for_line(outside / f"slurm-{job}.out", r"total_timesteps\s*\|\s*64\b", 180, cluster, job)
    cluster.run(["scancel", *signal_args, job])
    return job, chain_id


def test_scancel_leaves_a_version_a_resubmitted_job_continues(cluster, store, outside):
    """scancel (TERM to every process of the job) of a batch mid-training: the job is CANCELLED
    (not requeued), the run KILLED, the checkpoint registered as a version tagged interrupted=true;
    the same batch submitted again continues from it without lost steps and finishes the batch."""
    name = "slurm_cancel"
    job, chain_id = interrupted_then_continued(cluster, store, outside, name, [])
    info = cluster.wait(job, 90)
    assert (info["JobState"], info["Restarts"]) == ("CANCELLED", "0"), output_of(info)[-4000:]
    [killed] = chain_runs(store, chain_id)
    assert killed.info.status == "KILLED", output_of(info)[-4000:]
    [interrupted] = chain_versions(store, name, chain_id)
    assert interrupted.tags["interrupted"] == "true" and interrupted.run_id == killed.info.run_id
    saved_steps = int(interrupted.tags["steps"])
    assert 64 <= saved_steps < 256
    model_dir = Path(killed.data.tags["model_dir"])
    assert list(model_dir.glob("checkpoints/*.zip")), f"no checkpoint saved in {model_dir}/checkpoints"
    from mlflow import MlflowClient

    logged = MlflowClient(tracking_uri=store["uri"]).list_artifacts(killed.info.run_id, "checkpoints")
    assert any(a.path.endswith(".zip") for a in logged), "the checkpoint is not among the KILLED run's artifacts"

    # the same batch again (a user resubmitting it): continues from the interrupted version
    job = sbatch_trainer(cluster, store, outside, outside / f"{name}.yaml", TIMESTEPS="256", MODEL_NAME=name,
                         CHAIN_ID=chain_id, BATCH_INDEX="0")
    info = cluster.wait(job, 240)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), output_of(info)[-4000:]
    killed, resumed = chain_runs(store, chain_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_run_id"] == killed.info.run_id
    assert int(resumed.data.tags["start_steps"]) == saved_steps  # no step lost
    final = chain_versions(store, name, chain_id)[-1]
    assert (final.tags["interrupted"], final.tags["steps"]) == ("false", "256")  # only the missing steps trained
    assert final.tags["parent_version"] == str(interrupted.version)


def test_time_limit_warning_requeues_until_the_batch_is_done(cluster, store, outside):
    """USR1 to the batch shell (the --signal=B:USR1@300 warning, sent by hand): the trainer
    checkpoints (run KILLED, version interrupted=true), the script requeues the job, and the
    requeued run continues from that version and completes the batch's steps."""
    name = "slurm_requeue"
    job, chain_id = interrupted_then_continued(cluster, store, outside, name, ["--signal=USR1", "--batch"])
    info = cluster.wait(job, 300, states={"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
    log = output_of(info)
    assert (info["JobState"], info["Restarts"], info["ExitCode"]) == ("COMPLETED", "1", "0:0"), log[-4000:]
    assert "requeueing job" in log and log.count("restart 0:") == 1 and log.count("restart 1:") == 1
    killed, requeued = chain_runs(store, chain_id)
    assert (killed.info.status, requeued.info.status) == ("KILLED", "FINISHED")
    interrupted, final = chain_versions(store, name, chain_id)
    assert interrupted.tags["interrupted"] == "true"
    assert requeued.data.tags["resumed_from_run_id"] == killed.info.run_id
    assert int(requeued.data.tags["start_steps"]) == int(interrupted.tags["steps"])
    assert (final.tags["interrupted"], final.tags["steps"]) == ("false", "256")


def test_multinode_script_trains_on_a_ray_cluster_inside_the_job(cluster, store, outside, one_ray_cluster_at_a_time):
    """train_rl_multinode.slurm on this one-node SLURM with a second Ray node started inside
    the job (RAY_EXTRA_NODES=1): the Ray cluster comes up, three envs run as actors on both Ray
    nodes, the run finishes and registers, and the cluster is stopped when the trainer exits."""
    pytest.importorskip("ray", reason="the Ray backend needs the cluster extra: pip install -e '.[test,cluster]'")
    from mlflow import MlflowClient

    scenarios = outside / "ray_three.yaml"
    scenarios.write_text(yaml.safe_dump({"scenarios": [
        {"name": f"ray_s{k}", "num_vehicles": 150, "private_traffic_seed": 61 + k, "public_traffic_seed": 71 + k,
         "routing_strategy": "shortest 100"} for k in range(3)]}, sort_keys=False))
    job = cluster.sbatch(["--nodes=1", "--cpus-per-task=1", "--mem=3G", "--time=30", "--job-name=ray_multinode",
                          str(SERVER / "train_rl_multinode.slurm"), *train_args(store)],
                         cwd=outside, env=job_env(store, SCENARIOS=str(scenarios), TIMESTEPS="96", MODEL_NAME="ray_multi",
                                                  RAY_EXTRA_NODES="1", RAY_CPUS_PER_NODE="2"))
    info = cluster.wait(job, 400)
    log = output_of(info)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-4000:]
    assert "cluster up: 2 Ray node(s), 4 env slots" in log and "3 env actors on 2 node(s)" in log, log[-4000:]
    assert log.index("trainer exited with code 0") < log.index("Ray cluster stopped")
    versions = MlflowClient(tracking_uri=store["uri"]).search_model_versions("name='ray_multi'")
    [version] = versions
    run = MlflowClient(tracking_uri=store["uri"]).get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.data.params["env_backend"] == "ray"
    assert run.data.params["parallel_envs"] == "4" and version.tags["steps"] == "96"
