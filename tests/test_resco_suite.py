"""The map suite of `rl/benchmark.py --suite` end to end on two small studies of our own (RESCO's
maps are not in the repository): each from its time of day, one with junctions of different
phase counts; baselines, a real PPO training per map, the held-out rows, the zero-shot table,
the summary MLflow run, and a second call that runs nothing again."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import CONFIG_FILES, REPO_ROOT, python, subprocess_env
from route_fixtures import build_route_fixture
from test_begin import _mixed_phase_network

BEGIN, LENGTH = 3600, 300


def _study(folder: Path, net: Path, routes: Path) -> None:
    """One map folder: a .sumocfg from BEGIN to BEGIN + LENGTH on `net` with `routes` shifted to BEGIN."""
    folder.mkdir(parents=True)
    shifted = folder / "demand.rou.xml"
    shifted.write_text(re.sub(r'depart="([0-9.]+)"', lambda m: f'depart="{float(m.group(1)) + BEGIN:.1f}"',
                              routes.read_text()))
    (folder / f"{folder.name}.sumocfg").write_text(
        f'<configuration>\n  <input>\n    <net-file value="{net}"/>\n    <route-files value="{shifted.name}"/>\n'
        f'  </input>\n  <time>\n    <begin value="{BEGIN}"/>\n    <end value="{BEGIN + LENGTH}"/>\n  </time>\n'
        '  <processing>\n    <time-to-teleport value="120"/>\n  </processing>\n</configuration>\n')


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    fx = build_route_fixture(root / "fixture")
    maps = root / "maps"
    _study(maps / "corridor", fx.net_file, fx.route_files[0])
    _study(maps / "mixed", _mixed_phase_network(fx, root), fx.route_files[0])
    suite = root / "tiny.yaml"
    suite.write_text(yaml.safe_dump({
        "maps": {"corridor": {"decision_interval": 5}, "mixed": {"decision_interval": 10}},
        "algorithm": str(CONFIG_FILES["algorithm"]), "reward": "rl/configs/reward/delay.yaml",
        "phase_slots": 4, "decisions": 64, "min_episodes": 1, "rollout_decisions": 64, "evaluations": 1,
        "seeds": [0], "validation_seed": 50000, "heldout_seed": 100000, "repeats": 1,
        "baselines": ["fixed", "max_pressure"], "algorithm_overrides": {"learning_rate": 2e-4}}))
    out = root / "out"
    store = f"sqlite:///{root / 'mlflow.db'}"
    command = [python(), "rl/benchmark.py", "--suite", str(suite), "--maps", str(maps), "--output-dir", str(out),
               "--jobs", "2"]  # one seed: both maps side by side
    env = subprocess_env(MLFLOW_TRACKING_URI=store)
    first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = subprocess.run(command + ["--no-transfer"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return out, store, first.stdout, second.stdout


def test_each_map_has_its_baselines_and_a_trained_policy_judged_on_heldout_seeds(suite_run):
    out, _, _, _ = suite_run
    results = {name: json.loads((out / name / "result.json").read_text()) for name in ("corridor", "mixed")}
    assert (results["corridor"]["phases_min"], results["mixed"]["phases_min"]) == (4, 2)
    for name, result in results.items():
        assert (result["begin"], result["end"]) == (BEGIN, BEGIN + LENGTH)
        assert set(result["rows"]) == {"fixed", "max_pressure", "rl"}
        # the rows are what rl/evaluate.py measured on the held-out SUMO seed, per controller
        table = pd.read_csv(out / name / "baselines" / "evaluation.csv").set_index("controller")
        assert result["rows"]["fixed"]["delay"] == pytest.approx(table.loc["fixed", "mean_time_loss_all_mean"])
        rl = pd.read_csv(out / name / "rl_seed0" / "evaluation.csv").set_index("controller")
        assert result["rows"]["rl"]["delay"] == pytest.approx(rl.loc["rl", "mean_time_loss_all_mean"])
        assert 0 < result["rows"]["rl"]["completion"] <= 1
        # the training ran on this map's study over its own span, validated on its own SUMO seeds
        execution = yaml.safe_load((out / name / "configs" / "execution.yaml").read_text())
        assert execution["eval_sumo_seed"] == 50000 and result["timesteps"] >= 64
        (resolved,) = (out / name / "models" / "seed0").glob("*/resolved_config.yaml")  # the suite's override trained
        assert yaml.safe_load(resolved.read_text())["learning_rate"] == pytest.approx(2e-4)
        assert Path(result["models"]["0"]).is_file()
    # different programs, different traffic: the two maps' fixed rows differ
    assert results["corridor"]["rows"]["fixed"]["delay"] != pytest.approx(results["mixed"]["rows"]["fixed"]["delay"])


def test_zero_shot_table_runs_each_policy_on_the_other_map(suite_run):
    out, _, stdout, _ = suite_run
    table = pd.read_csv(out / "transfer.csv", index_col="trained_on")
    results = {name: json.loads((out / name / "result.json").read_text()) for name in ("corridor", "mixed")}
    for name in ("corridor", "mixed"):
        assert table.loc[name, name] == pytest.approx(results[name]["rl_per_seed"]["0"]["delay"])
    other = pd.read_csv(out / "transfer" / "corridor_on_mixed" / "evaluation.csv").set_index("controller")
    assert table.loc["corridor", "mixed"] == pytest.approx(other.loc["rl", "mean_time_loss_all_mean"])
    assert "Zero-shot transfer" in stdout and (out / "suite_delay.png").stat().st_size > 1000


def test_summary_run_holds_the_tables_and_a_second_call_runs_nothing(suite_run):
    out, store, _, again = suite_run
    client = MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "benchmark_resco"]
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])[0]
    result = json.loads((out / "mixed" / "result.json").read_text())
    assert run.data.metrics["mixed/rl/delay"] == pytest.approx(result["rows"]["rl"]["delay"])
    assert run.data.metrics["corridor/fixed/completion"] > 0
    assert {"suite.md", "suite.json", "suite_delay.png", "transfer.csv"} <= {
        f.path for f in client.list_artifacts(run.info.run_id)}
    assert again.count("done before") == 2 and "[benchmark] training" not in again
    assert "[benchmark] evaluation" not in again


def test_an_interrupted_seed_continues_from_its_last_model(suite_run, tmp_path, capsys, monkeypatch):
    """A seed whose call was cut short (its models kept, no `train_seed<k>.json`) continues from
    the most trained model for the steps left, and the judged model is the best on validation
    over both calls (the score travels in the best model's metadata)."""
    import shutil
    import sys

    from src.rl.utils import read_model_metadata

    sys.path.insert(0, str(REPO_ROOT / "rl"))
    from benchmark_steps import best_validated, latest_checkpoint, train_seed

    out, store, _, _ = suite_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    shutil.copytree(out / "corridor" / "models" / "seed0", tmp_path / "models" / "seed0")
    before, steps = latest_checkpoint(tmp_path / "models" / "seed0")
    assert steps >= 64 and read_model_metadata(best_validated(tmp_path / "models" / "seed0"))["validation_score"] > 0
    configs = out / "corridor" / "configs"
    family = {"name": "resco_corridor", "network": str(configs / "network.yaml"),
              "train_scenarios": str(configs / "scenarios.yaml"), "algorithm": str(configs / "algorithm.yaml"),
              "reward": str(REPO_ROOT / "rl/configs/reward/delay.yaml"), "execution": str(configs / "execution.yaml")}
    outcome = train_seed(family, 0, steps + 64, tmp_path)
    assert f"continuing from {before} (step {steps}; 64 left)" in capsys.readouterr().out
    assert read_model_metadata(Path(outcome["model"]))["num_timesteps"] >= steps + 64
    assert len(list((tmp_path / "models" / "seed0").glob("*/best/best_model.zip"))) == 2  # one per call
    assert Path(outcome["judged"]) == best_validated(tmp_path / "models" / "seed0")
    assert json.loads((tmp_path / "train_seed0.json").read_text()) == outcome


def test_a_baselines_only_call_runs_the_trained_policies_on_the_new_map(suite_run, tmp_path):
    """With `--baselines-only`, a map added later gets its classic rows and becomes a column of
    the zero-shot table for the maps trained before (rows), without any training. The new map is
    a copy of corridor: corridor's own policy on it, on the same held-out seed, must give
    corridor's own held-out delay."""
    import shutil

    out, store, _, _ = suite_run
    maps = out.parent / "maps"
    shutil.copytree(maps / "corridor", tmp_path / "maps" / "corridor_copy")
    (tmp_path / "maps" / "corridor_copy" / "corridor.sumocfg").rename(
        tmp_path / "maps" / "corridor_copy" / "corridor_copy.sumocfg")
    for name in ("corridor", "mixed"):
        (tmp_path / "maps" / name).symlink_to(maps / name)
    suite = yaml.safe_load((out.parent / "tiny.yaml").read_text())
    suite["maps"]["corridor_copy"] = suite["maps"]["corridor"]
    (tmp_path / "three.yaml").write_text(yaml.safe_dump(suite))
    shutil.copytree(out, tmp_path / "out")
    command = [python(), "rl/benchmark.py", "--suite", str(tmp_path / "three.yaml"), "--maps", str(tmp_path / "maps"),
               "--output-dir", str(tmp_path / "out"), "--baselines-only"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=subprocess_env(MLFLOW_TRACKING_URI=store))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[benchmark] training" not in done.stdout and not (tmp_path / "out" / "corridor_copy" / "result.json").exists()
    table = pd.read_csv(tmp_path / "out" / "transfer.csv", index_col="trained_on")
    assert sorted(table.index) == ["corridor", "mixed"]
    assert sorted(table.columns) == ["corridor", "corridor_copy", "mixed"]
    own = json.loads((out / "corridor" / "result.json").read_text())["rl_per_seed"]["0"]["delay"]
    assert table.loc["corridor", "corridor_copy"] == pytest.approx(own)
    fixed = pd.read_csv(tmp_path / "out" / "corridor_copy" / "baselines" / "evaluation.csv").set_index("controller")
    assert fixed.loc["fixed", "mean_time_loss_all_mean"] == pytest.approx(
        json.loads((out / "corridor" / "result.json").read_text())["rows"]["fixed"]["delay"])


def test_an_override_the_algorithm_file_lacks_is_refused_before_anything_runs(tmp_path):
    suite = yaml.safe_load((REPO_ROOT / "rl/configs/suites/resco.yaml").read_text())
    suite["algorithm_overrides"] = {"learning_rat": 1e-4}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(suite))
    run = subprocess.run([python(), "rl/benchmark.py", "--suite", str(tmp_path / "typo.yaml"), "--maps", str(tmp_path),
                          "--output-dir", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120, env=subprocess_env())
    assert run.returncode != 0 and "learning_rat" in run.stderr + run.stdout and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
