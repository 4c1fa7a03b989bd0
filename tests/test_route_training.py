"""Training on recorded demand: route-file scenarios rotate per episode on a network that
keeps its own multi-phase programs (real netconvert, SUMO, PPO)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from route_fixtures import END_TIME, build_route_fixture
from src.network.phases import read_phase_plans
from src.rl.phase_env import PhaseSelectEnv
from src.rl.training import build_shared_network


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    fx = build_route_fixture(tmp_path_factory.mktemp("routes"))
    network = build_shared_network(f"--net-file {fx.net_file}", tmp_path_factory.mktemp("net") / "network")
    return fx, network


def trip_ids(tripinfo) -> set:
    return {t.get("id") for t in ET.parse(tripinfo).getroot().iter("tripinfo")}


def test_env_rotates_route_files_and_keeps_the_programs(fixture, tmp_path):
    fx, network = fixture
    plans = read_phase_plans(network / "network.net.xml")
    assert {t: p.num_phases for t, p in plans.items()} == {"J1": 4, "J2": 4}  # the hand-written programs
    assert [p.green_durations for _, p in sorted(plans.items())] == [list(g) for _, g in sorted(fx.greens.items())]
    env = PhaseSelectEnv(f"--net-file {fx.net_file} --route-file {fx.route_files[0]} --end-time {END_TIME}", network,
                         decision_interval=5, work_dir=tmp_path / "env", route_files=[str(f) for f in fx.route_files])
    used = []
    for _ in range(3):
        _, info = env.reset()
        truncated = False
        while not truncated:
            _, _, _, truncated, info = env.step(np.zeros(env.num_signals, dtype=int))
        used.append(info["route_file"])
        ran = trip_ids(env.last_episode_dir / "tripinfo.xml")
        expected = set(fx.vehicle_ids[info["route_file"]])
        assert ran and ran <= expected  # SUMO's own trip records: only that file's vehicles
        assert 0 < info["episode_metrics"]["vehicles_arrived"] <= len(ran)
    assert used == ["routes_a.rou.xml", "routes_b.rou.xml", "routes_a.rou.xml"]
    env.close()
