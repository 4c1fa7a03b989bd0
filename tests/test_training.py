"""Real PPO on the tiny grid: save, reload, resume, schedules, early stopping, the rl controller."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO_ROOT, python
from src.rl.config import build_env_params_for_scenario, load_modular_config
from src.rl.training import learning_rate_at, train_rl_policy
from src.rl.utils import IncompatibleModelError, read_model_metadata

CONFIGS = REPO_ROOT / "rl" / "configs"


def tiny_config(**changes):
    config = load_modular_config(
        CONFIGS / "network/grid3_small.yaml",
        CONFIGS / "scenarios/small_mixed.yaml",
        CONFIGS / "algorithm/ppo_small.yaml",
        CONFIGS / "reward/empirical.yaml",
        CONFIGS / "execution/quick_test.yaml",
    )
    base = dict(end_time=360, n_steps=16, batch_size=16, n_epochs=2, total_timesteps=64, checkpoint_freq=32,
                eval_freq=0, early_stopping_patience=0)
    base.update(changes)
    return replace(config, scenarios=config.scenarios[:2], **base)


def progress_rows(folder: Path):
    with open(folder / "progress.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two scenarios, two envs (one process each), a few PPO updates."""
    config = tiny_config(features={"edge": ["density", "speed_ratio"], "junction": ["phase_durations"], "network": ["vehicles"]})
    out = tmp_path_factory.mktemp("train") / "model"
    from stable_baselines3.common.logger import make_output_format

    result = train_rl_policy(config, out, output_formats=[make_output_format("csv", str(out))])
    return config, result


def test_training_saves_a_model_that_reloads(trained):
    config, result = trained
    from stable_baselines3 import PPO

    assert result.model_path.is_file() and result.num_timesteps >= 64
    model = PPO.load(str(result.model_path))
    assert model.num_timesteps == result.num_timesteps
    metadata = read_model_metadata(result.model_path)
    assert metadata["features"] == {"edge": ["density", "speed_ratio"], "junction": ["phase_durations"], "network": ["vehicles"]}
    assert metadata["observation_size"] == model.observation_space.shape[0]
    assert [p.name for p in result.checkpoints] == ["model_32_steps.zip", "model_64_steps.zip"]
    # both scenarios finished episodes and reported their own metrics
    scenarios = {e["scenario"] for e in result.episodes}
    assert scenarios == {"small_shortest", "small_mixed"}
    planned = {e["scenario"]: e["vehicles_planned"] for e in result.episodes}
    assert planned["small_shortest"] != planned["small_mixed"]


def test_resume_continues_the_step_counter(trained, tmp_path):
    config, result = trained
    import torch

    try:
        more = train_rl_policy(replace(config, total_timesteps=32, torch_threads=2), tmp_path / "resumed",
                               resume_from=result.model_path)
        assert torch.get_num_threads() == 2  # the execution file's torch_threads reached the training process
    finally:
        torch.set_num_threads(1)
    assert more.start_timesteps == result.num_timesteps
    assert more.num_timesteps == result.num_timesteps + 32


def test_resume_refuses_a_model_of_another_network(trained, tmp_path):
    config, result = trained
    other = replace(config, grid_dimension=4)
    with pytest.raises(IncompatibleModelError, match="observation size"):
        train_rl_policy(other, tmp_path / "other", resume_from=result.model_path)


def test_trained_model_runs_as_the_rl_controller(trained, tmp_path):
    config, result = trained
    scenario = build_env_params_for_scenario(config, config.scenarios[0])
    args = shlex.split(scenario)
    args[args.index("tree_method")] = "rl"
    proc = subprocess.run([python(), "-m", "src.cli", *args, "--model-path", str(result.model_path),
                           "--output-dir", str(tmp_path / "rl"), "--quiet"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "rl" / "metrics.json").read_text())
    assert metrics["controller"] == "rl" and metrics["vehicles_arrived"] > 0


def test_rl_controller_observes_what_training_observed(trained, tiny_network):
    from src.control.actuator import CycleTiming
    from src.network.phases import read_phase_plans
    from src.rl.controller import RLController

    config, result = trained
    plans = read_phase_plans(result.model_dir / "network" / "network.net.xml")
    controller = RLController(plans, CycleTiming(60, 3, 5), str(result.model_path))
    assert controller.extractor.features == read_model_metadata(result.model_path)["features"]
    assert controller.timing.cycle_length == 90  # from the model, not from the CLI default
    assert controller.extractor.size == controller.model.observation_space.shape[0]


def test_learning_rate_reaches_final_and_entropy_decays(tmp_path):
    config = tiny_config(lr_schedule="exponential", learning_rate=1e-3, lr_final=1e-4, lr_decay_rate=0.97,
                         ent_schedule=True, ent_initial=0.05, ent_final=0.001, ent_decay_steps=64,
                         total_timesteps=96)
    config = replace(config, scenarios=config.scenarios[:1])
    from stable_baselines3.common.logger import make_output_format

    out = tmp_path / "sched"
    train_rl_policy(config, out, output_formats=[make_output_format("csv", str(out))])
    rows = [r for r in progress_rows(out) if r.get("train/learning_rate")]
    lrs = [float(r["train/learning_rate"]) for r in rows]
    ents = [float(r["train/ent_coef"]) for r in rows]
    assert lrs[0] == pytest.approx(1e-3 * 0.97 ** 16)
    assert lrs[-1] == pytest.approx(1e-4)  # reached the floor: 0.97^80 * 1e-3 < 1e-4
    assert ents == sorted(ents, reverse=True) and ents[-1] == pytest.approx(0.001)
    assert learning_rate_at(10**6, 1e-4, "linear", 5e-6, 0.0, 1000) == pytest.approx(5e-6)


def test_early_stopping_really_stops(tmp_path):
    # Any change below 1e9 counts as no improvement: the second evaluation must stop training.
    config = tiny_config(eval_freq=16, n_eval_episodes=1, early_stopping_patience=1, early_stopping_min_delta=1e9,
                         total_timesteps=160)
    config = replace(config, scenarios=config.scenarios[:1])
    result = train_rl_policy(config, tmp_path / "early")
    assert result.stopped_early
    assert result.num_timesteps == 32  # evaluated at 16 and 32, stopped at 32 of 160
