"""Worker of bench_rl_env: one random-action phase_select episode in a fresh process, as JSON.

Argument: a JSON object {"kind": "ours" | "sumo_rl", "net_file", "route_file", "end_time",
"decision_interval", "yellow_time", "min_green", "seed", "work_dir", "network_dir" (ours)}.
The time runs from the env's reset (SUMO start included) to the end of the episode (our
trip metrics included); imports and env construction are outside it. libsumo serves both,
one simulation in this process.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ours(job: dict) -> dict:
    from src.rl.phase_env import PhaseSelectEnv

    params = (f"--net-file {job['net_file']} --route-file {job['route_file']} --end-time {job['end_time']} "
              f"--yellow-time {job['yellow_time']} --min-green {job['min_green']} --sumo-seed {job['seed']}")
    env = PhaseSelectEnv(params, Path(job["network_dir"]), decision_interval=job["decision_interval"],
                         reward_function="delay", work_dir=Path(job["work_dir"]))
    rng = np.random.default_rng(job["seed"])
    c0, t0 = _cpu_s(), time.perf_counter()
    env.reset()
    steps, truncated, info = 0, False, {}
    while not truncated:
        _, _, _, truncated, info = env.step(rng.integers(0, env.max_phases, env.num_signals))
        steps += 1
    result = {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "steps": steps,
              "arrived": info["episode_metrics"]["vehicles_arrived"],
              "tripinfo": str(env.last_episode_dir / "tripinfo.xml")}
    env.close()
    return result


def sumo_rl(job: dict) -> dict:
    import sumo

    os.environ.setdefault("SUMO_HOME", sumo.SUMO_HOME)
    os.environ["LIBSUMO_AS_TRACI"] = "1"  # sumo-rl's own switch to libsumo, read at import
    from sumo_rl import SumoEnvironment

    # SUMO's default teleport time (300 s), as our runs have; everything else as sumo-rl's defaults
    env = SumoEnvironment(net_file=str(job["net_file"]), route_file=str(job["route_file"]), use_gui=False,
                          num_seconds=int(job["end_time"]), delta_time=int(job["decision_interval"]),
                          yellow_time=int(job["yellow_time"]), min_green=int(job["min_green"]),
                          sumo_seed=int(job["seed"]), time_to_teleport=300, sumo_warnings=False)
    rng = np.random.default_rng(job["seed"])
    c0, t0 = _cpu_s(), time.perf_counter()
    env.reset()
    steps, done = 0, False
    while not done:
        actions = {ts: int(rng.integers(0, env.action_spaces(ts).n)) for ts in env.ts_ids}
        _, _, dones, _ = env.step(actions)
        done = dones["__all__"]
        steps += 1
    result = {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "steps": steps}
    env.close()
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    job = json.loads(sys.argv[1])
    print(json.dumps({"ours": ours, "sumo_rl": sumo_rl}[job["kind"]](job)))
