"""Typed params <-> command line: every shipped scenario survives params -> argv -> params unchanged,
and its env-params string, pasted after `python -m src.cli`, runs the same scenario."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO_ROOT, python
from src import params as P
from src.argv import create_argument_parser, parse_simulation_params, to_argv, to_command_line, to_token
from src.orchestration.simulation import run_simulation
from src.rl.config import (
    ExperimentConfig,
    build_env_params_for_scenario,
    load_modular_config,
    network_params,
    network_params_string,
    scenario_params,
    validate_experiment,
)

CONFIGS = REPO_ROOT / "rl" / "configs"
NETWORK_FILES = sorted((CONFIGS / "network").glob("*.yaml"))
SCENARIO_FILES = sorted((CONFIGS / "scenarios").glob("*.yaml"))


def load(network: Path, scenarios: Path, execution: str = "long_run", overrides=None) -> ExperimentConfig:
    return load_modular_config(network, scenarios, CONFIGS / "algorithm/ppo_small.yaml", CONFIGS / "reward/delay.yaml",
                               CONFIGS / f"execution/{execution}.yaml", overrides=overrides)


def test_every_scenario_file_is_paired_with_every_network_file():
    assert len(NETWORK_FILES) >= 3 and len(SCENARIO_FILES) >= 5


@pytest.mark.parametrize("network", NETWORK_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("scenarios", SCENARIO_FILES, ids=lambda p: p.stem)
def test_params_argv_params_is_the_identity_for_every_shipped_scenario(network, scenarios):
    config = load(network, scenarios)
    net = network_params(config)
    for scenario in config.scenarios:
        params = scenario_params(config, scenario)
        assert params.network == net
        assert parse_simulation_params(to_argv(params)) == params
        text = build_env_params_for_scenario(config, scenario)
        assert text == to_command_line(params)
        assert parse_simulation_params(text) == params
        assert params.traffic.num_vehicles == scenario["num_vehicles"]
        assert params.traffic.end_time == config.end_time == 7200
        assert params.control.cycle_length == config.cycle_lengths[0]
    parsed = parse_simulation_params(network_params_string(config))
    assert parsed.network == net and parsed.control.cycle_length == config.cycle_lengths[0]


def test_unusual_values_round_trip(tmp_path):
    net_file = tmp_path / "city.net.xml"
    net_file.write_text("<net/>")
    config = ExperimentConfig(
        scenarios=[{"name": "windows", "departure_pattern": "custom:00:10-00:20,40;00:30-00:45,12.5",
                    "routing_strategy": "shortest 33.3 realtime 66.7", "start_time_hour": 23.75},
                   {"name": "day", "departure_pattern": "six_periods", "vehicle_types": "passenger 92 public 8"}],
        junctions_to_remove="B1,C2", grid_dimension=4, lane_count=3, attractiveness="poisson", decision_interval=7,
        block_size_m=123.456, cycle_lengths=[60, 90], end_time=3600, sumo_seed=11,
    )
    validate_experiment(config)
    for scenario in config.scenarios:
        params = scenario_params(config, scenario)
        assert parse_simulation_params(build_env_params_for_scenario(config, scenario)) == params
    windows = scenario_params(config, config.scenarios[0]).traffic.departure_pattern
    assert [(w.start_s, w.end_s, w.share_pct) for w in windows] == [(600, 1200, 40.0), (1800, 2700, 12.5)]
    assert scenario_params(config, config.scenarios[0]).network.junctions_to_remove == ("B1", "C2")
    assert scenario_params(config, config.scenarios[0]).control.decision_interval == 7

    on_file = P.SimulationParams(P.NetworkParams(net_file=net_file, attractiveness="uniform"),
                                 P.TrafficParams(num_vehicles=5, end_time=300.0), P.ControlParams(cycle_length=45),
                                 gui=True, output_dir=tmp_path / "out dir")
    assert parse_simulation_params(to_argv(on_file)) == on_file
    assert "--gui" in to_argv(on_file) and "'" in to_command_line(on_file)  # the space is quoted


def test_every_field_is_an_option_in_both_spellings():
    parser = create_argument_parser()
    for spec in P.FIELDS.values():
        name = spec.option[2:]
        example = {int: 7, float: 7.5}.get(spec.kind, "x") if spec.default is None else spec.default
        value = [] if spec.kind is bool else [to_token(example, spec.kind)]
        parsed = [getattr(parser.parse_args([f"--{spelling}", *value]), spec.name)
                  for spelling in (name.replace("-", "_"), name.replace("_", "-"))]
        assert parsed[0] == parsed[1] and parsed[0] is not None, spec.name


def test_the_env_params_string_replays_the_same_scenario(tmp_path):
    config = load(CONFIGS / "network/grid3_small.yaml", CONFIGS / "scenarios/small_mixed.yaml", "quick_test",
                  overrides={"end_time": 300})
    scenario = config.scenarios[1]  # buses and all four route kinds
    direct = run_simulation(replace(scenario_params(config, scenario), output_dir=tmp_path / "direct"), progress=False)
    text = build_env_params_for_scenario(config, scenario)
    proc = subprocess.run([python(), "-m", "src.cli", *shlex.split(text), "--output-dir", str(tmp_path / "replay"),
                           "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    replay = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    assert replay["controller"] == "tree_method"
    assert replay["vehicles_arrived"] > 0
    for name, value in direct.metrics.items():
        assert replay[name] == pytest.approx(value), name
