"""TrafficControlEnv, features, rewards and the vectorized multi-scenario env on real SUMO."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CONTROL, tiny_scenario
from src.control.actuator import CycleTiming, proportions_to_durations
from src.network.artifacts import NetworkArtifacts
from src.network.phases import read_phase_plans
from src.rl.environment import TrafficControlEnv, network_dimensions
from src.rl.reward import REWARD_FUNCTIONS, resolve_reward_params
from src.rl.traffic_analysis import FeatureExtractor
from src.rl.training import build_shared_network, create_vectorized_env


def arrivals_between(tripinfo: Path, start: float, end: float) -> int:
    """Trips that arrived during the simulation steps [start, end) (tripinfo stamps a step's start)."""
    root = ET.parse(tripinfo).getroot()
    return sum(1 for t in root.iter("tripinfo") if start <= float(t.get("arrival", -1)) < end)


def test_env_spaces_episode_and_metrics(tiny_network, tmp_path):
    env = TrafficControlEnv(tiny_scenario(num_vehicles=250, end_time=600), tiny_network, work_dir=tmp_path,
                            reward_function="throughput", scenario_name="tiny")
    dims = network_dimensions(tiny_network)
    assert env.observation_space.shape == (dims["observation"],)
    assert env.action_space.shape == (dims["signals"] * dims["max_phases"],)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and info["cycle_length"] == 60
    steps, arrived_by_step, times = 0, [], [60.0]
    rng = np.random.default_rng(0)
    while True:
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-3, 3, env.action_space.shape))
        steps += 1
        assert env.observation_space.contains(obs)
        arrived_by_step.append(info["arrived"])
        times.append(info["sim_time"])
        # throughput reward = every arrival of the whole cycle, per signalised junction
        assert reward == pytest.approx(info["arrived"] / dims["signals"])
        assert not terminated  # the end of the simulation is a time limit (truncated)
        if truncated:
            break
    assert steps == 9  # 600 s of 60 s cycles, the first one the warm-up cycle of reset()
    metrics = info["episode_metrics"]
    assert metrics["vehicles_planned"] == 250
    # the per-cycle arrival counts add up to the trip records' arrivals, cycle by cycle
    for k, count in enumerate(arrived_by_step):
        assert count == arrivals_between(tmp_path / "last_episode" / "tripinfo.xml", times[k], times[k + 1])
    warm_up = arrivals_between(tmp_path / "last_episode" / "tripinfo.xml", 0.0, 60.0)
    assert sum(arrived_by_step) + warm_up == metrics["vehicles_arrived"]
    env.close()


def test_actions_change_green_durations(tiny_network, tmp_path):
    env = TrafficControlEnv(tiny_scenario(end_time=240), tiny_network, work_dir=tmp_path)
    env.reset()
    action = np.full(env.action_space.shape, -3.0, dtype=np.float32)
    action[0] = 3.0  # first phase of the first junction
    env.step(action)
    first = env.extractor.tls_ids[0]
    durations = env._durations[first]
    assert durations[0] > durations[1] and durations.sum() == 60 - 3 * len(durations)
    assert env.sim.api.trafficlight.getAllProgramLogics(first)[-1].phases[0].duration == durations[0]
    env.close()


def test_junction_with_fewer_phases_ignores_extra_action_slots(tmp_path):
    network = build_shared_network(f"--network-seed 7 --grid_dimension 3 --block_size_m 150 --lane_count 2 "
                                   f"--signal-programs incoming --junctions_to_remove B1 {TINY_CONTROL}",
                                   tmp_path / "net")
    plans = read_phase_plans(NetworkArtifacts.load(network).net_file)
    extractor = FeatureExtractor(plans)
    counts = {tls: p.num_phases for tls, p in plans.items()}
    assert extractor.max_phases == 4 and min(counts.values()) < 4
    short = next(k for k, tls in enumerate(extractor.tls_ids) if counts[tls] < 4)
    rng = np.random.default_rng(1)
    action = rng.normal(size=extractor.action_size)
    changed = action.copy()
    changed[short * 4 + 3] += 5.0  # the slot beyond the junction's phases
    a, b = extractor.action_to_proportions(action), extractor.action_to_proportions(changed)
    tls = extractor.tls_ids[short]
    assert len(a[tls]) == counts[tls]
    assert np.allclose(a[tls], b[tls])
    timing = CycleTiming(60, 3, 5)
    assert proportions_to_durations(a[tls], timing).sum() == 60 - 3 * counts[tls]


def test_every_reward_function_computes_on_a_real_cycle(tiny_network, tmp_path):
    from src.rl.reward import compute_reward

    env = TrafficControlEnv(tiny_scenario(num_vehicles=300, end_time=240), tiny_network, work_dir=tmp_path)
    env.reset()
    for _ in range(3):
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    m, view = env.last_measurement, env.extractor.last_junction_view
    values = {name: compute_reward(name, resolve_reward_params(name), m, view) for name in REWARD_FUNCTIONS}
    env.close()
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["throughput"] == pytest.approx(m.arrived / len(env.extractor.tls_ids)) and values["throughput"] > 0
    assert values["waiting_time"] <= 0 and values["queue"] <= 0 and values["pressure"] <= 0
    weights = resolve_reward_params("multi_objective")
    expected = sum(weights[f"{term}_weight"] * compute_reward(term, {"scale": 1.0}, m, view)
                   for term in ("throughput", "waiting_time", "queue", "pressure", "speed"))
    assert values["multi_objective"] == pytest.approx(expected)


def test_unknown_reward_and_parameter_are_named():
    with pytest.raises(ValueError, match="allowed: .*empirical"):
        resolve_reward_params("nonsense")
    with pytest.raises(ValueError, match="throughput_weight"):
        resolve_reward_params("empirical", {"bogus": 1.0})
    assert {"empirical", "throughput", "multi_objective", "waiting_time", "queue", "pressure"} <= set(REWARD_FUNCTIONS)


def test_custom_feature_list_sets_observation(tiny_network, tmp_path):
    features = {"edge": ["density"], "junction": ["phase_durations"], "network": ["vehicles"]}
    env = TrafficControlEnv(tiny_scenario(end_time=120), tiny_network, features=features, work_dir=tmp_path)
    dims = network_dimensions(tiny_network)
    assert env.observation_space.shape == (dims["edges"] + dims["signals"] * dims["max_phases"] + 1,)
    env.close()


def test_vectorized_env_runs_each_scenario_on_one_network(tiny_network, tmp_path):
    params = [tiny_scenario(num_vehicles=150, seed=21, routing="shortest 100", end_time=300),
              tiny_scenario(num_vehicles=320, seed=22, routing="realtime 100", end_time=300)]
    vec = create_vectorized_env(params, tiny_network, cycle_lengths=[60], work_root=tmp_path,
                                scenario_names=["light_shortest", "heavy_realtime"])
    try:
        assert vec.num_envs == 2
        assert vec.get_attr("network")[0].directory == vec.get_attr("network")[1].directory == tiny_network
        vec.reset()
        done = np.zeros(2, dtype=bool)
        infos_at_end = {}
        while not done.all():
            _, _, dones, infos = vec.step(np.zeros((2, vec.action_space.shape[0]), dtype=np.float32))
            for k, info in enumerate(infos):
                if dones[k] and "episode_metrics" in info:
                    infos_at_end[info["scenario"]] = info["episode_metrics"]
                    done[k] = True
    finally:
        vec.close()
    assert infos_at_end["light_shortest"]["vehicles_planned"] == 150
    assert infos_at_end["heavy_realtime"]["vehicles_planned"] == 320
    # each env wrote its own SUMO output: routing shows in re-routes
    light = ET.parse(tmp_path / "00_light_shortest" / "last_episode" / "tripinfo.xml").getroot()
    heavy = ET.parse(tmp_path / "01_heavy_realtime" / "last_episode" / "tripinfo.xml").getroot()
    assert sum(int(t.get("rerouteNo")) for t in light.iter("tripinfo")) == 0
    assert sum(int(t.get("rerouteNo")) for t in heavy.iter("tripinfo")) > 0
    assert "routing" in "".join(t.get("devices", "") for t in heavy.iter("tripinfo"))


def test_an_env_beside_one_holding_this_process_libsumo_gets_a_process_and_libsumo_of_its_own(tiny_network, tmp_path):
    """libsumo runs one simulation per process: a validation env created in the process of a
    one-scenario training env falls back to TraCI unless it is given a process of its own."""
    scenario = tiny_scenario(num_vehicles=60, seed=31, end_time=120)
    made = {}
    try:
        for name, own_process in (("training", False), ("beside", False), ("own", True)):
            made[name] = create_vectorized_env(scenario, tiny_network, cycle_lengths=[60], work_root=tmp_path / name,
                                               own_process=own_process)
            made[name].reset()
        assert {name: vec.get_attr("sumo_backend") for name, vec in made.items()} == {
            "training": ["libsumo"], "beside": ["traci"], "own": ["libsumo"]}
    finally:
        for vec in made.values():
            vec.close()
