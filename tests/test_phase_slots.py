"""A junction-shared policy with a padded input (`phase_slots`) runs on a network of other
phase counts without retraining: trained on two-phase grid junctions, run on four-phase
programs, in its env and through `python -m src.cli --traffic_control rl` alike."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from stable_baselines3 import PPO

from route_fixtures import END_TIME, build_route_fixture
from src.argv import parse_simulation_params
from src.orchestration.simulation import SimulationError, run_simulation
from src.rl.config import ConfigError, validate_experiment
from src.rl.junction_observation import PhaseSlotError, junction_observation_size, phase_slots_for
from src.rl.normalization import ObservationNormalizer
from src.rl.phase_env import PhaseSelectEnv
from src.rl.training import build_shared_network, train_rl_policy
from src.rl.utils import read_model_metadata
from test_learning_signal import small_config


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    """Two junctions with hand-written four-phase programs, and their route file."""
    fx = build_route_fixture(tmp_path_factory.mktemp("corridor"))
    return fx, build_shared_network(f"--net-file {fx.net_file}", tmp_path_factory.mktemp("corridor_net") / "network")


def _train(tmp_path_factory, name: str, **changes):
    config = small_config(control_mode="phase_select", decision_interval=10, policy_sharing=None, total_timesteps=288,
                          n_steps=32, batch_size=96, normalize_observations=True, **changes)
    return train_rl_policy(config, tmp_path_factory.mktemp(name) / "model")


@pytest.fixture(scope="module")
def padded_model(tmp_path_factory):
    return _train(tmp_path_factory, "padded", phase_slots=6).model_path


def test_padded_input_has_the_slots_not_the_networks_phases(padded_model):
    metadata = read_model_metadata(padded_model)
    assert metadata["phase_slots"] == 6 and metadata["max_phases"] == 6
    assert max(metadata["phase_counts"].values()) == 2  # trained on two-phase junctions
    assert metadata["observation_size"] == junction_observation_size(6) and metadata["action_size"] == 6


def test_padded_policy_runs_on_four_phase_programs_exactly_like_its_env(padded_model, corridor, tmp_path):
    fx, network = corridor
    scenario = f"--net-file {fx.net_file} --route-file {fx.route_files[0]} --end-time {END_TIME}"
    model = PPO.load(str(padded_model), device="cpu")
    normalize = ObservationNormalizer.from_model_zip(padded_model)
    env = PhaseSelectEnv(scenario, network, decision_interval=10, phase_slots=6, work_dir=tmp_path / "env")
    obs, _ = env.reset()
    assert obs.shape == (2, junction_observation_size(6))
    assert (obs[:, 4 * 6 + 6: 4 * 6 + 12] == [1, 1, 1, 1, 0, 0]).all()  # four of six slots exist
    truncated = False
    while not truncated:
        actions, _ = model.predict(normalize(obs), deterministic=True)
        obs, _, _, truncated, info = env.step(actions)
    switches = info["switches"]
    env.close()
    params = parse_simulation_params(f"{scenario} --traffic_control rl --model-path {padded_model} "
                                     f"--output-dir {tmp_path / 'rl'}")
    outcome = run_simulation(params, progress=False, network_dir=network)
    assert outcome.metrics["vehicles_arrived"] == info["episode_metrics"]["vehicles_arrived"] > 0
    assert outcome.metrics["mean_travel_time"] == pytest.approx(info["episode_metrics"]["mean_travel_time"])
    assert switches > 0  # the policy acted on the four-phase programs


def test_unpadded_policy_is_refused_on_junctions_with_more_phases(tmp_path_factory, corridor, tmp_path):
    fx, network = corridor
    model = _train(tmp_path_factory, "unpadded").model_path
    assert read_model_metadata(model)["max_phases"] == 2
    params = parse_simulation_params(f"--net-file {fx.net_file} --route-file {fx.route_files[0]} --end-time 60 "
                                     f"--traffic_control rl --model-path {model} --output-dir {tmp_path / 'rl'}")
    with pytest.raises(SimulationError, match="4 phases, more than the policy's 2 phase slots"):
        run_simulation(params, progress=False, network_dir=network)


def test_phase_slots_are_checked(corridor):
    fx, network = corridor
    from src.network.phases import read_phase_plans

    plans = read_phase_plans(network / "network.net.xml")
    assert phase_slots_for(plans) == 4 and phase_slots_for(plans, 8) == 8
    with pytest.raises(PhaseSlotError, match="4 phases, more than the policy's 3 phase slots"):
        phase_slots_for(plans, 3)
    with pytest.raises(ConfigError, match="phase_slots"):
        validate_experiment(replace(small_config(), control_mode="cycle_splits", phase_slots=8))
    with pytest.raises(ConfigError, match="phase_slots.*expected an integer 2-16"):
        validate_experiment(replace(small_config(control_mode="phase_select"), phase_slots=1))


def test_padded_policy_never_asks_for_a_slot_its_junction_lacks(padded_model, corridor, tmp_path):
    """The slots beyond a junction's phases are masked (`SlotMaskedPolicy`): the flags reach the
    policy raw through the saved normalisation, and the missing slots get no probability, in the
    sampled policy as in argmax, on programs of another phase count than training's."""
    import torch as th

    from src.rl.junction_observation import slot_exists_columns
    from src.rl.policy import SlotMaskedPolicy

    fx, network = corridor
    model = PPO.load(str(padded_model), device="cpu")
    assert isinstance(model.policy, SlotMaskedPolicy)
    normalize = ObservationNormalizer.from_model_zip(padded_model)
    start, stop = slot_exists_columns(6)
    assert normalize.raw_columns == (start, stop)
    env = PhaseSelectEnv(f"--net-file {fx.net_file} --route-file {fx.route_files[0]} --end-time {END_TIME}", network,
                         decision_interval=10, phase_slots=6, work_dir=tmp_path / "env")
    obs, _ = env.reset(seed=3)
    sampled = []
    for _ in range(20):
        scaled = normalize(obs)
        assert (scaled[:, start:stop] == obs[:, start:stop]).all()  # the flags are not normalised
        with th.no_grad():
            probs = model.policy.get_distribution(th.as_tensor(scaled)).distribution.probs.numpy()
        assert probs[:, 4:].max() < 1e-6 and probs[:, :4].sum(axis=1) == pytest.approx(1.0)
        actions, _ = model.predict(scaled, deterministic=False)
        sampled.extend(np.asarray(actions).tolist())
        obs, _, _, truncated, _ = env.step(actions)
        if truncated:
            break
    env.close()
    assert max(sampled) < 4 and len(set(sampled)) > 1


def test_the_training_normalisation_saves_and_loads_with_its_raw_slot_flags(tmp_path):
    """SB3's own way to keep a `VecNormalize` (`save`, `load`: pickle) keeps the columns the slot
    mask reads raw: a user's script that saves the training wrapper gets the same observations
    back, the flags unscaled, the rest scaled with the saved statistics."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from src.rl.normalization import wrap_normalized

    def make():
        return gym.make("CartPole-v1")

    wrapped = wrap_normalized(DummyVecEnv([make]), True, True, 0.99, 10.0, raw_columns=(2, 4))
    obs = wrapped.reset()
    for _ in range(20):
        obs, _, _, _ = wrapped.step(np.array([wrapped.action_space.sample()]))
    raw = wrapped.get_original_obs()
    assert np.allclose(obs[:, 2:4], raw[:, 2:4]) and not np.allclose(obs[:, :2], raw[:, :2])
    wrapped.save(str(tmp_path / "vecnormalize.pkl"))
    loaded = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), DummyVecEnv([make]))
    assert type(loaded).__name__ == "PartlyRawVecNormalize" and loaded.raw_columns == (2, 4)
    assert np.allclose(loaded.normalize_obs(raw), wrapped.normalize_obs(raw))
    assert np.allclose(loaded.normalize_obs(raw)[:, 2:4], raw[:, 2:4])
