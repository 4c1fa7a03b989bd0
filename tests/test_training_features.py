"""README features of one training invocation, checked on one real run of `rl/server/train.py`
(and one resume) on an MLflow file store (`file:` URI, `MLFLOW_ALLOW_FILE_STORE=true`):

- more scenarios than `parallel_envs`: consecutive groups on one model, one step counter;
- evaluation on `eval_scenarios` every `eval_freq` steps, its `eval/*` metrics in MLflow;
- the learning-curve artifacts (`learning/learning_curve.csv` and `.png`);
- a budget that is not a whole number of rollouts: said up front, progress counted against it,
  the steps that ran logged;
- training, model registry and `--resume-from models:/...` on a file store.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import artifact_paths
from test_platform import run_id_from, scenario, train, write_scenarios


@pytest.fixture(autouse=True)
def file_store_allowed(monkeypatch):
    """MLflow 3 opens a file store only with this set (README: "MLflow")."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """Three scenarios on two parallel slots (groups of 2 + 1 envs, 50 steps each), evaluated on
    a validation scenario every 48 steps; n_steps 16, so the groups' rollouts are 32 and 16 steps."""
    root = tmp_path_factory.mktemp("features")
    store = f"file://{root / 'mlruns'}"
    scenarios = write_scenarios(root / "train.yaml", [scenario("g_a", 150, 31, "shortest 100"),
                                                      scenario("g_b", 200, 33, "shortest 100"),
                                                      scenario("g_c", 180, 35, "shortest 100")])
    validation = write_scenarios(root / "validation.yaml", [scenario("val_a", 170, 91, "shortest 100")])
    proc = train("rl/server/train.py", ["--scenarios", str(scenarios), "--parallel-envs", "2", "--timesteps", "100",
                                        "--eval-freq", "48", "--eval-scenarios", str(validation),
                                        "--model-name", "grouped_policy"], store, root / "models",
                 MLFLOW_ALLOW_FILE_STORE="true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        run = MlflowClient(tracking_uri=store).get_run(run_id_from(proc.stdout))
    return store, run, Path(run.data.tags["model_dir"]), proc.stdout + proc.stderr


def history(store: str, run_id: str, key: str) -> list:
    return sorted((m.step, m.value) for m in MlflowClient(tracking_uri=store).get_metric_history(run_id, key))


def test_scenarios_beyond_parallel_envs_train_as_consecutive_groups_on_one_model(grouped):
    store, run, folder, output = grouped
    assert "3 scenarios exceed 2 parallel slots: training in 2 consecutive groups of at most 2 envs" in output
    assert sorted(p.name for p in (folder / "group_0" / "envs").iterdir()) == ["00_g_a", "01_g_b"]
    assert sorted(p.name for p in (folder / "group_1" / "envs").iterdir()) == ["00_g_c"]
    # one model, one counter: the second group continued the first group's model
    assert run.data.metrics["final/num_timesteps"] == 128
    g_a = [step for step, _ in history(store, run.info.run_id, "scenario/g_a/mean_travel_time")]
    g_c = [step for step, _ in history(store, run.info.run_id, "scenario/g_c/mean_travel_time")]
    assert g_a and g_c and max(g_a) <= 64 < min(g_c)


def test_a_budget_of_partial_rollouts_is_said_counted_and_logged(grouped):
    store, run, folder, output = grouped
    # each group: 50 steps asked, whole rollouts of 32 (2 envs) and of 16 (1 env) steps
    assert "training 64 steps: total_timesteps 50 rounded up to whole rollouts of 32 steps (n_steps 16 x 2 envs)" in output
    assert "training 64 steps: total_timesteps 50 rounded up to whole rollouts of 16 steps (n_steps 16 x 1 envs)" in output
    progress = re.findall(r"step (\d+)/(\d+) \((\d+)%\)", output)
    assert progress and all(int(done) <= int(total) and int(pct) <= 100 for done, total, pct in progress), progress
    assert progress[-1] == ("64", "64", "100")
    assert run.data.params["total_timesteps"] == "100"  # what was asked ...
    assert run.data.metrics["final/trained_timesteps"] == 128  # ... and what ran


def test_eval_scenarios_are_evaluated_and_their_metrics_reach_mlflow(grouped):
    store, run, folder, _ = grouped
    metrics = run.data.metrics
    assert [step for step, _ in history(store, run.info.run_id, "eval/mean_travel_time_all")] == [48, 96]
    assert "eval/val_a/mean_travel_time" in metrics and "eval/val_a/completion_rate" in metrics
    assert not [k for k in metrics if re.match(r"eval/g_[abc]/", k)]  # the validation scenario, not the training ones
    assert history(store, run.info.run_id, "eval/val_a/mean_travel_time_all") == \
        history(store, run.info.run_id, "eval/mean_travel_time_all")  # one scenario: its value is the mean
    assert (folder / "group_0" / "best" / "best_model.zip").is_file()


def test_learning_curve_artifacts_hold_the_episodes_and_evaluations(grouped):
    store, run, folder, _ = grouped
    artifacts = artifact_paths(store, run.info.run_id)
    assert {"learning/learning_curve.csv", "learning/learning_curve.png"} <= artifacts
    rows = list(csv.DictReader(open(folder / "learning" / "learning_curve.csv")))
    evaluations = [(int(r["step"]), float(r["mean_travel_time_all"])) for r in rows if r["source"] == "eval"]
    logged = history(store, run.info.run_id, "eval/mean_travel_time_all")
    assert [step for step, _ in evaluations] == [step for step, _ in logged] == [48, 96]
    assert [value for _, value in evaluations] == pytest.approx([value for _, value in logged])
    assert {r["scenario"] for r in rows if r["source"] == "train"} == {"g_a", "g_b", "g_c"}
    assert (folder / "learning" / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_file_store_registers_the_model_and_resumes_from_it(grouped, tmp_path):
    store, run, _, _ = grouped
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert client.get_model_version("grouped_policy", "1").run_id == run.info.run_id
    proc = train("rl/local/train.py", ["--timesteps", "16", "--model-name", "grouped_policy",
                                       "--resume-from", "models:/grouped_policy/1"], store, tmp_path / "models",
                 MLFLOW_ALLOW_FILE_STORE="true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = client.get_run(run_id_from(proc.stdout))
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_run_id"] == run.info.run_id and resumed.data.tags["start_steps"] == "128"
    assert resumed.data.metrics["final/num_timesteps"] == 144
    assert client.get_model_version("grouped_policy", "2").run_id == resumed.info.run_id
