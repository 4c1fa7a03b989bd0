"""Sweeps for real: Optuna studies whose trials are PPO trainings on the tiny grid (real SUMO),
tracked as child runs of the sweep's parent in a real MLflow store; a pruned trial, two workers
sharing one budget, a worker stopped by SIGTERM whose study a second run finishes, and a
worker killed by SIGKILL whose trial the next worker fails and runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from conftest import CONFIG_FILES, REPO_ROOT, artifact_paths, python, subprocess_env
from src.rl.config import load_modular_config

sys.path.insert(0, str(REPO_ROOT / "rl"))
import sweep as sweep_script  # noqa: E402  (rl/sweep.py)

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "net_arch": {"type": "categorical", "choices": [[16], [32, 32]]},
    "reward_params.waiting_weight": {"type": "float", "low": 0.1, "high": 1.0},
}
#: One scenario, 8 PPO steps of 90 s cycles in 360 s episodes, one evaluation per 8 steps.
TINY = ["--network", str(CONFIG_FILES["network"]), "--algorithm", str(CONFIG_FILES["algorithm"]),
        "--reward", str(CONFIG_FILES["reward"]), "--execution", str(CONFIG_FILES["execution"]),
        "--end-time", "360", "--n-steps", "8", "--batch-size", "8", "--checkpoint-freq", "1000",
        "--timesteps", "8", "--eval-freq", "8"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module (making one costs seconds): tests tell runs apart by parent."""
    from src.tracking.store import ensure_store

    return ensure_store(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


def all_runs(store: str) -> list:
    client = MlflowClient(tracking_uri=store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_args(tmp_path: Path, store: str, trials: int, *extra: str, space=SPACE, study: str = "tiny") -> list:
    scenarios = write_yaml(tmp_path / "one.yaml", {"scenarios": [
        {"name": "s1", "num_vehicles": 200, "private_traffic_seed": 11, "public_traffic_seed": 12,
         "routing_strategy": "shortest 100"}]})
    return [str(write_yaml(tmp_path / "space.yaml", space)), "--trials", str(trials), "--study", study,
            "--scenarios", str(scenarios), "--output", str(tmp_path / "sweep"), "--tracking-uri", store, *TINY, *extra]


def load_study(tmp_path: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")


def runs_of(store: str, parent_id: str):
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def eval_history(store: str, run_id: str):
    return {m.step: m.value for m in MlflowClient(tracking_uri=store).get_metric_history(run_id, "eval/mean_travel_time_all")}


def test_three_trials_are_children_of_the_sweep_and_the_best_files_load(tmp_path, store, capsys):
    assert sweep_script.main(sweep_args(tmp_path, store, 3, "--sampler-seed", "1")) == 0
    study = load_study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.best_trial"] == str(study.best_trial.number)
    children = {int(r.data.tags["sweep.trial"]): r for r in runs_of(store, parent_id)}
    assert sorted(children) == [0, 1, 2]
    for trial in study.trials:
        run = children[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["sweep.state"] == "COMPLETE"
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        # params = the values that ran; the objective = the evaluation the run logged
        assert float(run.data.params["learning_rate"]) == pytest.approx(trial.params["learning_rate"])
        assert run.data.params["net_arch"] == trial.params["net_arch"]  # a list, offered to Optuna as its text
        assert float(run.data.params["reward_params.waiting_weight"]) == pytest.approx(trial.params["reward_params.waiting_weight"])
        assert trial.value == pytest.approx(min(eval_history(store, run.info.run_id).values()))
        # reported at every evaluation, numbered 0, 1, ...
        assert list(trial.intermediate_values.values()) == pytest.approx(list(eval_history(store, run.info.run_id).values()))
    artifacts = artifact_paths(store, parent_id)
    for expected in ("trials/trials.csv", "best/best_values.yaml", "best/best_ppo_small.yaml", "best/best_empirical.yaml",
                     "plots/history.png", "plots/parallel_coordinates.png", "plots/param_importances.png",
                     "config/space/space.yaml"):
        assert expected in artifacts, artifacts
    out = tmp_path / "sweep"
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 4  # header + 3 trials
    best = study.best_trial
    config = load_modular_config(CONFIG_FILES["network"], tmp_path / "one.yaml", out / "best_ppo_small.yaml",
                                 out / "best_empirical.yaml", CONFIG_FILES["execution"])
    assert config.learning_rate == pytest.approx(best.params["learning_rate"])
    assert config.net_arch == yaml.safe_load(best.params["net_arch"])
    assert config.reward_params["waiting_weight"] == pytest.approx(best.params["reward_params.waiting_weight"])
    assert config.reward_params["speed_weight"] == 1.0  # the reward file's other weights kept
    # a second run of the same sweep finds the budget spent: no trial, same parent
    assert sweep_script.main(sweep_args(tmp_path, store, 3)) == 0
    assert len(load_study(tmp_path).trials) == 3 and len(runs_of(store, parent_id)) == 3


def test_a_trial_above_the_threshold_is_pruned_at_its_first_evaluation(tmp_path, store):
    args = sweep_args(tmp_path, store, 1, "--pruner", "threshold", "--prune-above", "1", "--timesteps", "24",
                      study="pruned")
    assert sweep_script.main(args) == 0
    (trial,) = load_study(tmp_path, "pruned").trials
    run_id = trial.user_attrs["mlflow_run_id"]
    history = eval_history(store, run_id)
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {0: history[8]} and list(history) == [8]
    assert trial.value == pytest.approx(history[8]) and trial.value > 1
    run = MlflowClient(tracking_uri=store).get_run(run_id)
    assert run.data.tags["sweep.state"] == "PRUNED" and run.data.metrics["final/num_timesteps"] == 8  # not 24
    artifacts = artifact_paths(store, load_study(tmp_path, "pruned").user_attrs["mlflow_parent_run_id"])
    assert "plots/history.png" in artifacts and "plots/param_importances.png" not in artifacts  # no complete trial


@pytest.mark.parametrize("space, extra, message", [
    ({"lerning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}}, [], "unknown key 'lerning_rate'"),
    ({"num_vehicles": {"type": "int", "low": 100, "high": 200}}, [], "belongs to the scenarios file"),
    ({"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-4}}, [], "low 0.001 must be below high 0.0001"),
    ({"learning_rate": {"type": "float", "low": 0, "high": 1e-3, "log": True}}, [], "a log scale needs low > 0"),
    ({"learning_rate": {"type": "uniform", "low": 1e-4, "high": 1e-3}}, [], "unknown distribution 'uniform'"),
    ({"gamma": {"type": "float", "low": 0.9, "high": 1.5}}, [], "value 1.5 is refused by training"),
    ({"reward_params.nope": {"type": "float", "low": 0, "high": 1}}, [], "has no parameter 'nope'"),
    ({"n_epochs": {"type": "int", "low": 2, "high": 4}}, ["--storage", "sqlite:////no/such/folder/s.db"], "does not exist"),
    ({"n_epochs": {"type": "int", "low": 2, "high": 4}}, ["--storage", "postgresql://u:secret@127.0.0.1:9/db"],
     "cannot open the study storage"),
    ({"n_epochs": {"type": "int", "low": 2, "high": 4}}, ["--eval-freq", "0"], "key 'eval_freq' is 0"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_trial(tmp_path, store, capsys, space, extra, message):
    runs = len(all_runs(store))
    assert sweep_script.main(sweep_args(tmp_path, store, 2, *extra, space=space)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "secret" not in err, err
    assert not (tmp_path / "sweep" / "trials").exists()
    assert len(all_runs(store)) == runs


def worker(tmp_path: Path, store: str, trials: int, *extra: str, study: str) -> subprocess.Popen:
    return subprocess.Popen([python(), "rl/sweep.py", *sweep_args(tmp_path, store, trials, *extra, study=study)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=subprocess_env())


def test_two_workers_share_one_budget(tmp_path, store):
    """... and, with a --stale-after shorter than a trial, neither fails the other's live trial:
    the heartbeat thread marks a training trial alive."""
    stale = ("--stale-after", "4")
    workers = [worker(tmp_path, store, 4, *stale, study="pair"), worker(tmp_path, store, 4, *stale, study="pair")]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-6000:]
    study = load_study(tmp_path, "pair")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert max((t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials) > 4 * 1.5
    ran = [[n for n in range(4) if f"trial {n} COMPLETE" in out] for out in outputs]
    assert sorted(ran[0] + ran[1]) == [0, 1, 2, 3] and ran[0] and ran[1], (ran, *(o[-2500:] for o in outputs))  # each ran some, none twice
    children = runs_of(store, study.user_attrs["mlflow_parent_run_id"])
    assert sorted(int(r.data.tags["sweep.trial"]) for r in children) == [0, 1, 2, 3]
    parents = MlflowClient(tracking_uri=store).search_runs(
        [children[0].info.experiment_id], filter_string="params.study = 'pair'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


def test_sigterm_fails_the_trial_kills_its_run_and_a_rerun_finishes_the_study(tmp_path, store):
    job = worker(tmp_path, store, 2, study="stopped")
    lines = []
    for line in job.stdout:  # trial 0 done, trial 1's MLflow run open: stop it as scancel would
        lines.append(line)
        if "trial 0 COMPLETE" in "".join(lines) and "MLflow run" in line and "in experiment" in line:
            break
    os.killpg(job.pid, signal.SIGTERM)
    out = "".join(lines) + job.communicate(timeout=120)[0]
    assert job.returncode == 3, out[-3000:]
    study = load_study(tmp_path, "stopped")
    first, killed, retry = study.trials
    assert (first.state, killed.state, retry.state) == (TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING)
    assert killed.user_attrs["interrupted"] and retry.user_attrs["retry_of"] == 1
    client = MlflowClient(tracking_uri=store)
    killed_run = client.get_run(killed.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "KILLED" and killed_run.data.tags["sweep.state"] == "FAIL"
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    assert client.get_run(parent_id).info.status == "KILLED"

    assert sweep_script.main(sweep_args(tmp_path, store, 2, study="stopped")) == 0
    study = load_study(tmp_path, "stopped")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[2].params == killed.params  # the interrupted values ran again; trial 0 did not
    assert sorted(int(r.data.tags["sweep.trial"]) for r in runs_of(store, parent_id)) == [0, 1, 2]
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_a_sigkilled_workers_trial_is_failed_and_its_values_run_again_by_the_next_worker(tmp_path, store, capsys):
    """SIGKILL leaves the trial RUNNING with no one to end it: the next worker, seeing no sign of
    life for --stale-after seconds, fails it (MLflow run KILLED) and runs its values again."""
    job = worker(tmp_path, store, 1, "--timesteps", "400", study="lost")
    lines = []
    for line in job.stdout:  # trial 0's MLflow run open: kill the worker and its envs without a word
        lines.append(line)
        if "MLflow run" in line and "in experiment" in line:
            break
    os.killpg(job.pid, signal.SIGKILL)
    job.communicate(timeout=60)
    (lost,) = load_study(tmp_path, "lost").trials
    assert lost.state == TrialState.RUNNING and time.time() - lost.user_attrs["heartbeat"] < 120
    client = MlflowClient(tracking_uri=store)
    parent_id = load_study(tmp_path, "lost").user_attrs["mlflow_parent_run_id"]
    (lost_run,) = runs_of(store, parent_id)
    assert lost_run.info.status == "RUNNING"

    # a worker started right away leaves it alone: the default --stale-after is minutes
    assert sweep_script.main(sweep_args(tmp_path, store, 1, study="lost")) == 0
    assert [t.state for t in load_study(tmp_path, "lost").trials] == [TrialState.RUNNING]
    assert "trial 0 is RUNNING elsewhere" in capsys.readouterr().out
    time.sleep(2.5)
    assert sweep_script.main(sweep_args(tmp_path, store, 1, "--stale-after", "2", study="lost")) == 0
    failed, retry = load_study(tmp_path, "lost").trials
    assert (failed.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert failed.user_attrs["interrupted"] and "no sign of life" in failed.user_attrs["note"]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == lost.params
    killed = client.get_run(lost_run.info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["sweep.state"] == "FAIL"
    assert failed.user_attrs["mlflow_run_id"] == lost_run.info.run_id
    assert sorted(int(r.data.tags["sweep.trial"]) for r in runs_of(store, parent_id)) == [0, 1]
    assert client.get_run(parent_id).info.status == "FINISHED"


@pytest.mark.parametrize("space_file, files", [
    ("ppo_grid4.yaml", {"network": "network/grid4_bench.yaml", "scenarios": "scenarios/grid4_train.yaml",
                        "algorithm": "algorithm/ppo_shared.yaml", "reward": "reward/delay.yaml",
                        "execution": "execution/grid4_bench.yaml"}),
    ("ppo_quick.yaml", {role: str(path) for role, path in CONFIG_FILES.items()}),
])
def test_shipped_search_spaces_fit_the_configs_they_are_for(space_file, files):
    from src.rl.sweep import Experiment, check_space, read_space

    paths = {role: str(REPO_ROOT / "rl/configs" / path) for role, path in files.items()}
    overrides = {"eval_freq": 64}  # quick_test.yaml evaluates nothing: a sweep passes --eval-freq
    base = load_modular_config(*(paths[r] for r in ("network", "scenarios", "algorithm", "reward", "execution")),
                               overrides=overrides)
    space = read_space(REPO_ROOT / "rl/configs/sweep" / space_file)
    check_space(space, Experiment(paths, overrides, base), space_file)  # refuses with SweepError
    assert space and all(p.candidates() for p in space)


def test_journal_storage_opens_and_its_budget_lock_is_exclusive(tmp_path):
    """journal://<file>: the storage for workers on several nodes (sweep.slurm's default)."""
    from src.rl.sweep import BudgetLock, open_storage, spent, storage_file

    url = f"journal://{tmp_path / 'study.journal'}"
    study = optuna.create_study(storage=open_storage(url), study_name="j", direction="minimize")
    lock = BudgetLock(storage_file(url))
    with lock:
        with pytest.raises(FileExistsError):  # what another worker's acquire meets until release
            os.open(tmp_path / "study.journal.budget.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        study.tell(study.ask(), 1.0)
    assert not (tmp_path / "study.journal.budget.lock").exists()
    assert spent(optuna.load_study(study_name="j", storage=open_storage(url))) == 1
