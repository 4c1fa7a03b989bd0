"""Fixed-seed episodes whose every value is pinned (`tests/data/golden_episodes.npz`).

The speed work on the envs and the actuator must not change what a policy sees or what SUMO
simulates: these episodes record each step's observation and per-junction reward, and the
episode's SUMO trip records, so `tests/test_golden_episodes.py` can compare them value for
value. Run as a script to write the file again (only when a change of values is intended,
and say so in the commit):

    PYTHONPATH=. .venv/bin/python tests/golden_episodes.py
"""

from __future__ import annotations

import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Dict

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import TINY_CONTROL, TINY_NETWORK, tiny_scenario  # noqa: E402
from route_fixtures import END_TIME, build_route_fixture  # noqa: E402

GOLDEN_FILE = Path(__file__).resolve().parent / "data" / "golden_episodes.npz"
#: Trip record attributes compared (SUMO's tripinfo).
TRIP_FIELDS = ("depart", "arrival", "duration", "waitingTime", "timeLoss", "routeLength")


def trip_records(tripinfo: Path) -> Dict[str, np.ndarray]:
    """Every trip of a tripinfo file (unfinished ones included), sorted by vehicle id."""
    rows = sorted((t.get("id"), [float(t.get(f, "nan")) for f in TRIP_FIELDS])
                  for t in ET.parse(tripinfo).getroot().iter("tripinfo"))
    return {"ids": np.array([r[0] for r in rows]), "values": np.array([r[1] for r in rows], dtype=float)}


def _phase_episode(env, seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs, _ = env.reset()
    observations, rewards = [obs], []
    truncated = False
    while not truncated:
        obs, _, _, truncated, info = env.step(rng.integers(0, env.max_phases, env.num_signals))
        observations.append(obs)
        rewards.append(info["junction_rewards"])
    trips = trip_records(env.last_episode_dir / "tripinfo.xml")
    env.close()
    return {"obs": np.array(observations), "rewards": np.array(rewards), "trip_ids": trips["ids"],
            "trips": trips["values"]}


def phase_select_grid(network: Path, work: Path) -> Dict[str, np.ndarray]:
    """The tiny 3x3 grid (two phases and a yellow per junction), random phase requests."""
    from src.rl.phase_env import PhaseSelectEnv

    env = PhaseSelectEnv(tiny_scenario(num_vehicles=500, end_time=400), network, decision_interval=5,
                         reward_function="delay", work_dir=work / "grid")
    return _phase_episode(env, 0)


def phase_select_corridor(work: Path) -> Dict[str, np.ndarray]:
    """Hand-written four-phase programs (protected lefts, 3 s yellows), random phase requests."""
    from src.rl.phase_env import PhaseSelectEnv
    from src.rl.training import build_shared_network

    fx = build_route_fixture(work / "corridor_files")
    network = build_shared_network(f"--net-file {fx.net_file}", work / "corridor_network")
    env = PhaseSelectEnv(f"--net-file {fx.net_file} --route-file {fx.route_files[0]} --end-time {END_TIME}", network,
                         decision_interval=3, reward_function="delay", work_dir=work / "corridor")
    return _phase_episode(env, 1)


def cycle_splits_grid(network: Path, work: Path) -> Dict[str, np.ndarray]:
    """`cycle_splits` on the tiny grid: random green shares each cycle."""
    from src.rl.environment import TrafficControlEnv

    env = TrafficControlEnv(tiny_scenario(num_vehicles=500, end_time=600), network, reward_function="empirical",
                            work_dir=work / "cycle")
    rng = np.random.default_rng(2)
    obs, _ = env.reset()
    observations, rewards = [obs], []
    truncated = False
    while not truncated:
        obs, reward, _, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        observations.append(obs)
        rewards.append(reward)
    trips = trip_records(env.last_episode_dir / "tripinfo.xml")
    env.close()
    return {"obs": np.array(observations), "rewards": np.array(rewards), "trip_ids": trips["ids"],
            "trips": trips["values"]}


def max_pressure_grid(network: Path, work: Path) -> Dict[str, np.ndarray]:
    """The production runner (`run_simulation`) with the max-pressure controller."""
    from src.argv import parse_simulation_params
    from src.orchestration.simulation import run_simulation

    params = parse_simulation_params(f"{tiny_scenario(num_vehicles=500, end_time=400)} --traffic_control max_pressure "
                                     f"--output-dir {work / 'max_pressure'} --quiet")
    result = run_simulation(params, progress=False, network_dir=network)
    trips = trip_records(result.output_dir / "tripinfo.xml")
    return {"trip_ids": trips["ids"], "trips": trips["values"]}


def tiny_network(work: Path) -> Path:
    from src.rl.training import build_shared_network

    return build_shared_network(f"{TINY_NETWORK} {TINY_CONTROL}", work / "network")


#: Case name -> function(tiny network, work folder) -> arrays.
CASES: Dict[str, Callable[[Path, Path], Dict[str, np.ndarray]]] = {
    "phase_select_grid": phase_select_grid,
    "phase_select_corridor": lambda network, work: phase_select_corridor(work),
    "cycle_splits_grid": cycle_splits_grid,
    "max_pressure_grid": max_pressure_grid,
}


def record_all(work: Path) -> Dict[str, np.ndarray]:
    network = tiny_network(work)
    flat: Dict[str, np.ndarray] = {}
    for name, case in CASES.items():
        for key, value in case(network, work / name).items():
            flat[f"{name}/{key}"] = value
    return flat


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        arrays = record_all(Path(tmp))
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN_FILE, **arrays)
    print(f"wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size} bytes): "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
