"""Experiment configuration: the repository's YAML files, precedence, errors, env-params strings.

No SUMO runs here: env-params strings are checked with the simulation CLI's own parser.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from src import params as P
from src.argv import parse_simulation_params
from src.rl import constants as C
from src.rl.config import schema as S
from src.tracking.run import flatten
from src.rl.config import (
    ConfigError,
    ExperimentConfig,
    build_env_params_for_scenario,
    load_experiment,
    load_modular_config,
    network_params_string,
    save_experiment,
    validate_experiment,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "rl" / "configs"
EXPERIMENTS = ROOT / "experiments"


def repo_files(**choice: str) -> dict:
    names = {"network": "grid6_realistic", "scenarios": "heavy_load", "algorithm": "ppo_default",
             "reward": "empirical", "execution": "long_run", **choice}
    return {group: CONFIGS / group / f"{name}.yaml" for group, name in names.items()}


def load_repo(overrides=None, **choice: str) -> ExperimentConfig:
    return load_modular_config(**repo_files(**choice), overrides=overrides)


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def files_with(tmp_path: Path, group: str, data) -> dict:
    """The repository's five files with one replaced by a tiny YAML written in tmp_path."""
    files = repo_files()
    files[group] = write(tmp_path, f"bad_{group}.yaml", data)
    return files


def error_of(files: dict, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_modular_config(**files, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- the repository's files ------------------------------------------------------------------


def test_repository_files_load_into_a_valid_config():
    config = load_repo()
    assert isinstance(config, ExperimentConfig)
    # network
    assert config.network_seed == 24208
    assert config.grid_dimension == 6
    assert config.junctions_to_remove == 2
    assert config.block_size_m == 280.0
    assert config.lane_count == "realistic"
    assert config.signal_programs == "partial_opposites"
    assert config.cycle_lengths == [90] and config.cycle_strategy == "fixed"
    # scenarios
    assert len(config.scenarios) >= 3
    assert config.scenario_names[:2] == ["heavy_realtime_s1", "heavy_mixed_s1"]
    first, second = config.scenarios[0], config.scenarios[1]
    assert first["num_vehicles"] == 22000
    assert (first["private_traffic_seed"], first["public_traffic_seed"]) == (72632, 27031)
    assert first["routing_strategy"] == "realtime 100"
    assert second["num_vehicles"] == 25000
    assert (second["private_traffic_seed"], second["public_traffic_seed"]) == (41893, 55102)
    assert second["routing_strategy"] == "shortest 70 realtime 30"
    assert second["vehicle_types"] == "passenger 90 public 10"
    assert second["start_time_hour"] == 7.0
    assert all(set(s) == S.SCENARIO_TRAFFIC_KEYS | {"name"} for s in config.scenarios)  # completed with defaults
    # algorithm
    assert config.learning_rate == 1e-4 and isinstance(config.learning_rate, float)
    assert config.lr_final == 5e-6
    assert config.lr_schedule == "exponential" and config.lr_decay_rate == 0.99995
    assert (config.n_steps, config.batch_size, config.n_epochs) == (4096, 2048, 5)
    assert config.gamma == 0.995 and config.gae_lambda == 0.98
    assert config.net_arch == [256, 256] and config.activation == "relu"
    assert config.ent_initial == 0.02 and config.ent_final == 0.001 and config.ent_decay_steps == 500000
    # reward, execution
    assert config.reward_function == "empirical"
    assert config.end_time == 7200
    assert config.total_timesteps == 500000 and config.checkpoint_freq == 50000
    assert config.early_stopping_patience == 10 and config.early_stopping_min_delta == 1.0
    assert config.parallel_envs == 8 and config.single_env is False
    assert config.source_files == {g: str(p) for g, p in repo_files().items()}


@pytest.mark.parametrize("network", ["grid6_realistic", "grid3_small"])
@pytest.mark.parametrize("scenarios", ["heavy_load", "heavy_load_batch2", "small_mixed"])
@pytest.mark.parametrize("algorithm,reward,execution", [
    ("ppo_default", "empirical", "long_run"),
    ("ppo_small", "throughput", "quick_test"),
    ("ppo_small", "empirical", "laptop"),
])
def test_every_combination_of_repository_files_is_valid(network, scenarios, algorithm, reward, execution):
    config = load_repo(network=network, scenarios=scenarios, algorithm=algorithm, reward=reward, execution=execution)
    assert len(config.env_params_strings()) == len(config.scenarios) >= 2


def test_batch2_scenarios_are_new():
    batch1 = load_repo()
    batch2 = load_repo(scenarios="heavy_load_batch2")
    assert len(batch2.scenarios) == 3
    assert not set(batch1.scenario_names) & set(batch2.scenario_names)
    seeds = lambda c: {s["private_traffic_seed"] for s in c.scenarios}  # noqa: E731
    assert not seeds(batch1) & seeds(batch2)


def test_defaults_come_from_constants():
    config = ExperimentConfig()
    assert config.learning_rate == C.DEFAULT_LEARNING_RATE == 1e-4
    assert config.cycle_lengths == [90] and config.min_green == 5 and config.yellow_time == 3
    assert config.end_time is None and config.begin is None and config.models_dir == "rl/models" and config.device == "cpu"
    assert config.torch_threads == C.DEFAULT_TORCH_THREADS == 1
    assert config.reward_function == "empirical"
    assert config.features == {g: list(v) for g, v in C.DEFAULT_FEATURES.items()}
    config.cycle_lengths.append(60)  # mutable defaults are not shared
    assert ExperimentConfig().cycle_lengths == [90]


# --- precedence ----------------------------------------------------------------------------


def test_execution_beats_algorithm_and_overrides_beat_both():
    config = load_repo(execution="quick_test")
    assert config.n_steps == 32 and config.batch_size == 32  # quick_test shrinks ppo_default
    assert config.n_epochs == 5 and config.learning_rate == 1e-4  # not in quick_test: algorithm's
    assert config.end_time == 900 and config.single_env is True

    config = load_repo(execution="quick_test", overrides={"n_steps": 16, "total_timesteps": 64, "seed": 7,
                                                          "learning_rate": 3e-4, "device": None, "torch_threads": 3})
    assert config.n_steps == 16 and config.total_timesteps == 64 and config.seed == 7 and config.torch_threads == 3
    assert config.learning_rate == 3e-4
    assert config.device == "cpu"  # None means "not given on the command line"
    assert "command-line" in config.key_sources["n_steps"]


def test_overrides_are_checked():
    with pytest.raises(ConfigError, match=r"command-line overrides: key 'total_timesteps': expected an integer"):
        load_repo(overrides={"total_timesteps": "many"})
    with pytest.raises(ConfigError, match=r"unknown key 'total_timestep' \(did you mean 'total_timesteps'\?\)"):
        load_repo(overrides={"total_timestep": 10})
    with pytest.raises(ConfigError, match=r"key 'num_vehicles' cannot be overridden"):
        load_repo(overrides={"num_vehicles": 10})


# --- errors name the file and the key --------------------------------------------------------


def test_key_in_wrong_file(tmp_path):
    files = files_with(tmp_path, "network", {"grid_dimension": 4, "learning_rate": 1e-3})
    message = error_of(files)
    assert str(files["network"]) in message
    assert "'learning_rate'" in message and "belongs in the algorithm file" in message and "network file" in message


def test_execution_key_in_algorithm_file(tmp_path):
    files = files_with(tmp_path, "algorithm", {"n_steps": 64, "end_time": 900})
    message = error_of(files)
    assert str(files["algorithm"]) in message and "'end_time'" in message and "execution file" in message


def test_unknown_key_suggests_close_match(tmp_path):
    files = files_with(tmp_path, "algorithm", {"learnig_rate": 1e-3})
    message = error_of(files)
    assert str(files["algorithm"]) in message
    assert "unknown key 'learnig_rate'" in message and "did you mean 'learning_rate'" in message
    assert "allowed in the algorithm file" in message


@pytest.mark.parametrize("group,data,key,expected", [
    ("network", {"grid_dimension": "6"}, "grid_dimension", "expected an integer 2-26, got str '6'"),
    ("network", {"grid_dimension": True}, "grid_dimension", "got bool"),
    ("network", {"cycle_lengths": 90}, "cycle_lengths", "expected a non-empty list"),
    ("network", {"signal_programs": "oposites"}, "signal_programs", "did you mean 'opposites'"),
    ("network", {"lane_count": 9}, "lane_count", "integer 1-5"),
    ("algorithm", {"learning_rate": "fast"}, "learning_rate", "expected a number > 0, got str 'fast'"),
    ("algorithm", {"gamma": 1.5}, "gamma", "<= 1"),
    ("algorithm", {"net_arch": [256, "wide"]}, "net_arch", "layer sizes"),
    ("algorithm", {"activation": "sigmoid"}, "activation", "allowed: relu, tanh, elu, leaky_relu"),
    ("execution", {"single_env": "yes please"}, "single_env", "expected true or false"),
    ("execution", {"end_time": 900.5}, "end_time", "got float"),
    ("execution", {"device": "gpu"}, "device", "cpu, cuda"),
])
def test_wrong_type_or_value(tmp_path, group, data, key, expected):
    files = files_with(tmp_path, group, data)
    message = error_of(files)
    assert str(files[group]) in message and f"key '{key}'" in message and expected in message


def test_percentage_mix_must_sum_to_100(tmp_path):
    files = files_with(tmp_path, "scenarios", {"scenarios": [
        {"name": "ok", "num_vehicles": 500},
        {"name": "bad_mix", "num_vehicles": 500, "vehicle_types": "passenger 90 public 5"},
    ]})
    message = error_of(files)
    assert str(files["scenarios"]) in message and "scenario 'bad_mix'" in message
    assert "key 'vehicle_types'" in message and "sum to 95" in message and "100" in message


def test_unknown_routing_strategy_name(tmp_path):
    files = files_with(tmp_path, "scenarios", {"scenarios": [{"name": "s", "routing_strategy": "shortest 50 quickest 50"}]})
    message = error_of(files)
    assert "key 'routing_strategy'" in message and "'quickest'" in message and "realtime" in message


def test_scenario_setting_a_network_key(tmp_path):
    files = files_with(tmp_path, "scenarios", {"scenarios": [{"name": "s1", "num_vehicles": 500, "grid_dimension": 4}]})
    message = error_of(files)
    assert str(files["scenarios"]) in message and "scenario 's1'" in message
    assert "'grid_dimension' is a network key" in message and "network file" in message


def test_scenario_setting_an_execution_key(tmp_path):
    files = files_with(tmp_path, "scenarios", {"scenarios": [{"name": "s1", "end_time": 900}]})
    message = error_of(files)
    assert "scenario 's1'" in message and "'end_time'" in message and "execution file" in message


def test_scenario_problems(tmp_path):
    message = error_of(files_with(tmp_path, "scenarios", {"scenarios": [{"name": "a"}, {"name": "a"}]}))
    assert "scenario 'a'" in message and "duplicate scenario name" in message and "key 'name'" in message

    message = error_of(files_with(tmp_path, "scenarios", {"scenarios": [{"num_vehicles": 500}]}))
    assert "scenario #1" in message and "'name' is missing" in message

    message = error_of(files_with(tmp_path, "scenarios", {"scenarios": []}))
    assert "bad_scenarios.yaml" in message and "empty" in message

    message = error_of(files_with(tmp_path, "scenarios", {"other": 1}))
    assert "bad_scenarios.yaml" in message and "unknown key 'other'" in message

    message = error_of(files_with(tmp_path, "scenarios", {"scenarios": [{"name": "s", "num_vehicle": 5}]}))
    assert "unknown key 'num_vehicle'" in message and "did you mean 'num_vehicles'" in message

    message = error_of(files_with(tmp_path, "scenarios", {"scenarios": [{"name": "s", "num_vehicles": 0}]}))
    assert "key 'num_vehicles'" in message and ">= 1" in message


def test_network_key_in_scenarios_file_top_level(tmp_path):
    message = error_of(files_with(tmp_path, "scenarios", {"grid_dimension": 3, "scenarios": [{"name": "s"}]}))
    assert "bad_scenarios.yaml" in message and "'grid_dimension' belongs in the network file" in message


def test_custom_departure_window_after_end_time(tmp_path):
    files = files_with(tmp_path, "scenarios", {"scenarios": [{"name": "late", "departure_pattern": "custom:01:00-03:00,50"}]})
    message = error_of(files)
    assert "scenario 'late'" in message and "key 'departure_pattern'" in message and "7200 s from --begin to --end-time" in message


def test_missing_file_and_bad_yaml(tmp_path):
    files = repo_files()
    files["reward"] = tmp_path / "nowhere.yaml"
    message = error_of(files)
    assert "reward file" in message and "nowhere.yaml" in message and "does not exist" in message

    message = error_of(files_with(tmp_path, "execution", "- 1\n- 2\n"))
    assert "bad_execution.yaml" in message and "must be a mapping" in message

    message = error_of(files_with(tmp_path, "execution", "end_time: [900\n"))
    assert "bad_execution.yaml" in message and "invalid YAML" in message and "line" in message

    message = error_of(files_with(tmp_path, "execution", "end_time: 900\nend_time: 1800\n"))
    assert "bad_execution.yaml" in message and "'end_time' is given twice" in message


def test_cross_key_checks(tmp_path):
    message = error_of(files_with(tmp_path, "execution", {"early_stopping_patience": 3, "eval_freq": 0}))
    assert "key 'early_stopping_patience'" in message and "eval_freq" in message

    message = error_of(files_with(tmp_path, "execution", {"end_time": 60}))
    assert "key 'cycle_lengths'" in message and "60 s from begin to end_time" in message

    files = repo_files(network="grid3_small")
    message = error_of(files, overrides={"junctions_to_remove": 5})
    assert "--junctions_to_remove" in message


def test_empty_reward_file_takes_defaults(tmp_path):
    files = files_with(tmp_path, "reward", "# nothing here: the defaults\n")
    config = load_modular_config(**files)
    assert config.reward_function == C.DEFAULT_REWARD_FUNCTION and config.reward_params == {}


def test_net_file_relative_to_network_file(tmp_path):
    (tmp_path / "city.net.xml").write_text("<net/>")
    files = files_with(tmp_path, "network", {"net_file": "city.net.xml"})
    config = load_modular_config(**files)
    assert Path(config.net_file) == (tmp_path / "city.net.xml").resolve()
    assert "--net-file" in network_params_string(config)

    message = error_of(files_with(tmp_path, "network", {"net_file": "missing.net.xml"}))
    assert "--net-file" in message and "missing.net.xml" in message


# --- names of the reward and feature registries ------------------------------------------------


def test_reward_names_and_params_are_checked(tmp_path):
    known = S.known_rewards()
    message = error_of(files_with(tmp_path, "reward", {"reward_function": "throughputt"}))
    assert "bad_reward.yaml" in message and "key 'reward_function'" in message and "did you mean 'throughput'" in message
    assert known["empirical"] == {"throughput_weight", "waiting_weight", "speed_weight"}
    message = error_of(files_with(tmp_path, "reward", {"reward_function": "empirical", "reward_params": {"sclae": 1}}))
    assert "key 'reward_params'" in message and "'sclae'" in message and "allowed:" in message
    message = error_of(files_with(tmp_path, "reward", {"reward_function": "empirical", "reward_params": {"x": "big"}}))
    assert "key 'reward_params'" in message and "expected a number" in message
    # a cycle reward under phase_select is refused here, not when the first env steps after the run opened
    message = error_of(files_with(tmp_path, "reward", {"reward_function": "empirical"}),
                       overrides={"control_mode": "phase_select"})
    assert "bad_reward.yaml: key 'reward_function'" in message and "phase_select takes one of: delay" in message
    # ... and a reward file that names none gives phase_select its own default
    silent = load_modular_config(**files_with(tmp_path, "reward", {"reward_params": {"scale": 2}}),
                                 overrides={"control_mode": "phase_select"})
    assert silent.reward_function == "delay" and silent.reward_params == {"scale": 2}


def test_feature_names_are_checked(tmp_path):
    message = error_of(files_with(tmp_path, "algorithm", {"features": {"edge": ["speed_ratio", "sped"]}}))
    assert "bad_algorithm.yaml" in message and "key 'features'" in message and "unknown edge feature 'sped'" in message
    message = error_of(files_with(tmp_path, "algorithm", {"features": {"edges": ["speed_ratio"]}}))
    assert "unknown feature group 'edges'" in message and "did you mean 'edge'" in message
    config = load_modular_config(**files_with(tmp_path, "algorithm", {"features": {"edge": ["density"]}}))
    assert config.features["edge"] == ["density"]
    assert config.features["network"] == list(C.DEFAULT_FEATURES["network"])  # left-out group: defaults


def test_default_features_exist_in_registry():
    registries = S.known_features()
    for group, names in C.DEFAULT_FEATURES.items():
        assert set(names) <= registries[group]


# --- env-params strings --------------------------------------------------------------------


def test_env_params_parse_and_carry_the_scenario():
    config = load_repo()
    for scenario in config.scenarios:
        text = build_env_params_for_scenario(config, scenario)
        params = parse_simulation_params(text)
        assert params.traffic.num_vehicles == scenario["num_vehicles"]
        assert params.traffic.private_traffic_seed == scenario["private_traffic_seed"]
        assert params.traffic.public_traffic_seed == scenario["public_traffic_seed"]
        assert params.traffic.start_time_hour == scenario["start_time_hour"]
        assert params.traffic.end_time == 7200
        assert params.network.grid_dimension == 6 and params.network.block_size_m == 280.0
        assert params.network.network_seed == 24208 and params.network.junctions_to_remove == 2
        assert params.network.signal_programs == "partial_opposites"
        assert params.control.traffic_control == "tree_method"
        assert params.control.cycle_length == 90
        assert (params.control.min_green, params.control.yellow_time) == (5, 3)
        assert params.sumo_seed == config.sumo_seed
    mixed = parse_simulation_params(build_env_params_for_scenario(config, config.scenarios[1]))
    assert mixed.traffic.routing_strategy == {"shortest": 70.0, "realtime": 30.0}
    assert mixed.traffic.vehicle_types == {"passenger": 90.0, "public": 10.0}
    assert "--end-time 7200" in build_env_params_for_scenario(config, config.scenarios[1])


def test_env_params_quote_values_and_take_defaults():
    config = load_repo(execution="quick_test")
    text = build_env_params_for_scenario(config, {"name": "partial", "num_vehicles": 300})
    tokens = shlex.split(text)
    assert tokens[tokens.index("--routing_strategy") + 1] == P.DEFAULT_ROUTING_STRATEGY
    params = parse_simulation_params(text)
    assert params.traffic.num_vehicles == 300 and params.traffic.end_time == 900


def test_env_params_error_names_the_scenario():
    config = load_repo()
    with pytest.raises(ConfigError, match=r"scenario 'oops'.*--vehicle_types"):
        build_env_params_for_scenario(config, {"name": "oops", "vehicle_types": "passenger 50"})


def test_network_params_string_has_only_network_options():
    config = load_repo()
    text = network_params_string(config)
    assert text == config.network_params_string()
    assert "--num_vehicles" not in text and "--end-time" not in text
    params = parse_simulation_params(text)
    assert params.network.grid_dimension == 6 and params.network.lane_count == "realistic"
    assert params.control.cycle_length == 90


def test_validate_experiment_on_a_built_config():
    config = ExperimentConfig(scenarios=[{"name": "only", "num_vehicles": 200}], block_size_m=150)
    validate_experiment(config)
    assert config.block_size_m == 150.0 and set(config.scenarios[0]) == S.SCENARIO_TRAFFIC_KEYS | {"name"}
    with pytest.raises(ConfigError, match="scenario list is empty"):
        validate_experiment(ExperimentConfig())
    with pytest.raises(ConfigError, match=r"config: key 'n_steps': expected an integer"):
        validate_experiment(ExperimentConfig(scenarios=[{"name": "s"}], n_steps="64"))


# --- monolithic files, inheritance, snapshots ------------------------------------------------


def test_monolithic_baseline_and_inheritance():
    baseline = load_experiment(EXPERIMENTS / "baseline.yaml")
    assert len(baseline.scenarios) == 2 and baseline.reward_function == "empirical"
    focused = load_experiment(EXPERIMENTS / "throughput_focused.yaml")
    assert focused.reward_function == "throughput" and focused.reward_params == {"scale": 0.5}
    assert focused.experiment_name == "throughput_focused"
    assert focused.ent_coef != baseline.ent_coef
    # everything else is baseline's
    assert focused.scenarios == baseline.scenarios
    for key in ("grid_dimension", "block_size_m", "learning_rate", "n_steps", "net_arch", "end_time", "total_timesteps"):
        assert getattr(focused, key) == getattr(baseline, key), key
    assert focused.source_files["base_config_1"].endswith("baseline.yaml")


def test_inheritance_chain_and_cycle(tmp_path):
    write(tmp_path, "a.yaml", {"grid_dimension": 3, "scenarios": [{"name": "s", "num_vehicles": 100}], "end_time": 1800})
    write(tmp_path, "b.yaml", {"base_config": "a.yaml", "end_time": 900})
    write(tmp_path, "c.yaml", {"base_config": "b.yaml", "learning_rate": 1e-3})
    config = load_experiment(tmp_path / "c.yaml")
    assert (config.grid_dimension, config.end_time, config.learning_rate) == (3, 900, 1e-3)

    write(tmp_path, "x.yaml", {"base_config": "y.yaml", "scenarios": [{"name": "s"}]})
    write(tmp_path, "y.yaml", {"base_config": "x.yaml"})
    with pytest.raises(ConfigError, match=r"base_config.*cycle"):
        load_experiment(tmp_path / "x.yaml")

    write(tmp_path, "d.yaml", {"base_config": "gone.yaml"})
    with pytest.raises(ConfigError, match=r"d\.yaml: key 'base_config'.*gone\.yaml does not exist"):
        load_experiment(tmp_path / "d.yaml")


def test_monolithic_errors_name_the_defining_file(tmp_path):
    write(tmp_path, "base.yaml", {"scenarios": [{"name": "s"}], "block_size_m": "big"})
    write(tmp_path, "child.yaml", {"base_config": "base.yaml"})
    with pytest.raises(ConfigError, match=r"base\.yaml: key 'block_size_m': expected a number"):
        load_experiment(tmp_path / "child.yaml")
    write(tmp_path, "typo.yaml", {"scenarios": [{"name": "s"}], "n_step": 8})
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key 'n_step' \(did you mean 'n_steps'\?\)"):
        load_experiment(tmp_path / "typo.yaml")
    write(tmp_path, "noscen.yaml", {"end_time": 900})
    with pytest.raises(ConfigError, match=r"noscen\.yaml: key 'scenarios' is missing"):
        load_experiment(tmp_path / "noscen.yaml")


@pytest.mark.parametrize("loader", [
    lambda: load_repo(),
    lambda: load_repo(execution="quick_test", algorithm="ppo_small", overrides={"model_name": "m1", "experiment_name": "e 1"}),
    lambda: load_experiment(EXPERIMENTS / "throughput_focused.yaml"),
])
def test_save_load_round_trip(tmp_path, loader):
    config = loader()
    path = save_experiment(config, tmp_path / "snap" / "resolved_config.yaml")
    again = load_experiment(path)
    assert again == config
    assert again.to_dict() == config.to_dict()
    assert flatten(again.to_dict()) == flatten(config.to_dict())
    assert [build_env_params_for_scenario(again, s) for s in again.scenarios] == config.env_params_strings()


def test_round_trip_of_unusual_values(tmp_path):
    config = ExperimentConfig(
        scenarios=[{"name": "s1", "departure_pattern": "custom:00:10-00:20,40"}],
        junctions_to_remove="B1,C2", grid_dimension=4, lane_count=3, net_arch={"pi": [64], "vf": [128, 64]},
        ent_schedule=True, experiment_name="1e5", reward_params={"throughput_weight": 2},
    )
    validate_experiment(config)
    again = load_experiment(save_experiment(config, tmp_path / "odd.yaml"))
    assert again == config and again.experiment_name == "1e5"


def test_flatten_for_mlflow():
    flat = flatten(load_repo().to_dict())  # what the training pipeline logs as the run's params
    assert flat["scenarios.0.name"] == "heavy_realtime_s1"
    assert flat["scenarios.1.num_vehicles"] == "25000"
    assert float(flat["learning_rate"]) == 1e-4
    assert flat["net_arch"] == "[256, 256]"
    assert flat["features.edge"].startswith("['speed_ratio")
    assert all(isinstance(k, str) and len(k) < 250 for k in flat)
    assert all(not isinstance(v, (list, dict)) for v in flat.values())


def test_grouped_dict_uses_each_file_key_set():
    grouped = load_repo().to_grouped_dict()
    assert list(grouped) == list(S.CONFIG_GROUPS)
    for group, values in grouped.items():
        assert set(values) <= S.GROUP_KEYS[group]
    assert set().union(*map(set, grouped.values())) == S.EXPERIMENT_FILE_KEYS
