#!/usr/bin/env python
"""The Ray env backend against the subprocess backend: the same envs, the same actions.

env-steps per second of 2 cycle_splits envs as Ray actors (`RayVecEnv`, on a Ray instance
started on this machine, or the cluster of `--ray-address`) / the same 2 envs as subprocess
workers (`ResilientSubprocVecEnv`); each run is a reset and one episode of random actions
(seeded, the same for both). Alternated, best of N.                      target >= 0.9x
The per-step overhead of Ray: the round trip of one call to both envs (`get_attr`, no SUMO
work) on Ray actors minus on subprocess workers, best of N rounds of ROUND_TRIPS calls, in ms;
and the difference of the episode runs' best times per vectorised step (noisier: SUMO's work).
Default size: the quick 4x4 scenario (4000 vehicles) over 1800 s; --quick: 900 s.

    .venv/bin/python bench/bench_ray_backend.py [--quick] [--reps N] [--vehicles V] [--end-time T]
        [--ray-address auto|HOST:PORT]
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (Ratio, Report, add_size_arguments, alternate, base_parser, quick_scenario, reps_of,  # noqa: E402
                    stderr_to_file, work_dir)

TARGET_RATIO = ">= 0.9"
QUICK_END_TIME = 900
ROUND_TRIPS = 200


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], default_reps=2, quick_reps=2)
    add_size_arguments(parser)
    parser.add_argument("--ray-address", default=None, help="a running Ray cluster (default: a new local one)")
    args = parser.parse_args()
    reps = reps_of(args)
    scenario = quick_scenario(args.vehicles, args.end_time or (QUICK_END_TIME if args.quick else None))
    report = Report("bench_ray_backend", args.quick, sizes={"scenario": scenario.describe(), "reps": reps})
    print(f"[bench_ray_backend] {scenario.label}; best of {reps}, alternated", flush=True)
    tmp = work_dir("ray_backend", args.keep)
    logging.basicConfig(level=logging.WARNING)

    from src.rl.ray_vec_env import connect
    from src.rl.training import build_shared_network, create_vectorized_env

    connect(args.ray_address)
    network_dir = build_shared_network(scenario.params(), tmp / "network")
    params = [scenario.params(), scenario.params(private_seed=72633)]
    with stderr_to_file(tmp / "sumo_stderr.log"):
        backends = {backend: create_vectorized_env(params, network_dir, work_root=tmp / backend,
                                                   scenario_names=["s0", "s1"], env_backend=backend)
                    for backend in ("subprocess", "ray")}
        probe = backends["subprocess"]
        cycle = probe.get_attr("timing")[0].cycle_length
        begin, end = probe.get_attr("begin")[0], probe.get_attr("end_time")[0]
        steps = int(np.ceil((end - begin) / cycle))  # one episode; its last step auto-resets
        space = probe.action_space

        def run(backend: str) -> float:
            vec, rng = backends[backend], np.random.default_rng(0)
            t0 = time.perf_counter()
            vec.reset()
            for _ in range(steps):
                vec.step(rng.uniform(space.low, space.high, size=(vec.num_envs, space.shape[0])).astype(np.float32))
            return time.perf_counter() - t0

        def round_trip(backend: str) -> float:
            vec = backends[backend]
            t0 = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                vec.get_attr("episode")
            return (time.perf_counter() - t0) / ROUND_TRIPS

        try:
            runs = alternate({"2 envs, subprocess workers": lambda: run("subprocess"),
                              "2 envs, Ray actors": lambda: run("ray")}, reps, "backend")
            calls = alternate({"call, subprocess": lambda: round_trip("subprocess"),
                               "call, Ray": lambda: round_trip("ray")}, reps, "round trip")
        finally:
            for vec in backends.values():
                vec.close()
    subprocess_s, ray_s = min(runs["2 envs, subprocess workers"]), min(runs["2 envs, Ray actors"])
    env_steps = 2 * steps
    report.samples.update({"steps_per_env": steps, "subprocess_s": runs["2 envs, subprocess workers"],
                           "ray_s": runs["2 envs, Ray actors"]})
    report.add(Ratio("env-steps/s, 2 envs: Ray actors / subprocess workers", subprocess_s / ray_s, TARGET_RATIO,
                     f"best of {reps}: {env_steps / ray_s:.2f} vs {env_steps / subprocess_s:.2f} steps/s, "
                     f"{steps} steps per env"))
    call_ray, call_subprocess = 1000 * min(calls["call, Ray"]), 1000 * min(calls["call, subprocess"])
    episode_ms = 1000.0 * (ray_s - subprocess_s) / steps
    report.samples.update({"round_trip_ray_ms": calls["call, Ray"], "round_trip_subprocess_ms": calls["call, subprocess"],
                           "ray_overhead_ms_per_step": call_ray - call_subprocess,
                           "episode_difference_ms_per_step": episode_ms})
    print(f"  Ray overhead per vectorised step: {call_ray - call_subprocess:+.2f} ms (round trip to both envs "
          f"{call_ray:.2f} ms on Ray, {call_subprocess:.2f} ms on subprocesses; best of {reps} x {ROUND_TRIPS} calls)",
          flush=True)
    print(f"  episode runs: {episode_ms:+.1f} ms per step (Ray - subprocess, best times; a step takes "
          f"{1000 * subprocess_s / steps:.0f} ms on subprocess workers)", flush=True)
    report.save()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
