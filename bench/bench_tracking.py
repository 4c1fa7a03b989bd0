#!/usr/bin/env python
"""MLflow tracking cost: the same short training run with and without tracking.

`run_training(args, "local")` (what `rl/local/train.py` runs) in a fresh process each time,
once with `--no-mlflow` and once with a temporary SQLite store (created beforehand, as a
user's store already exists), alternated, best of N. The timed span is `run_training`
plus, for the tracked run, the import of the tracking module (mlflow); modules both runs
need are imported before it. Ratio = tracked / untracked.            target <= 1.02x
The tracked runs also time every MLflow call of the pipeline, listed as shares of the
untracked run (run start, params, config artifacts, metrics, checkpoints, final policy
logging and registration); their sum is a second, direct estimate of the tracking cost
(target <= 0.02 of the untracked run), less exposed to other load on the machine than the
difference of two ~30-60 s wall times.

Training: grid3_small network, first scenario of small_mixed, ppo_small, laptop execution
(1800 s episodes, checkpoint and evaluation every 1000 steps), 4000 steps (about 40 s);
--quick: 2000 steps.

    .venv/bin/python bench/bench_tracking.py [--quick] [--reps N] [--timesteps T]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, finish, Ratio, Report, alternate, base_parser, reps_of, run_json_worker, work_dir  # noqa: E402

TARGET = "<= 1.02"
#: MLflow calls that grow with the length of training; the others happen once per run.
RECURRING = ("MetricsBuffer.add (incl. flushes)", "MetricsBuffer.flush", "MLflowOutputFormat.write (incl. flushes)",
             "TrainingRun.log_artifact")
CONFIGS = {
    "network": "rl/configs/network/grid3_small.yaml",
    "scenarios": "rl/configs/scenarios/small_mixed.yaml",
    "algorithm": "rl/configs/algorithm/ppo_small.yaml",
    "reward": "rl/configs/reward/empirical.yaml",
    "execution": "rl/configs/execution/laptop.yaml",
}


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], default_reps=3, quick_reps=3)
    parser.add_argument("--timesteps", type=int, default=None, help="PPO steps per run (default 4000, quick 2000)")
    args = parser.parse_args()
    reps = reps_of(args)
    timesteps = args.timesteps or (2000 if args.quick else 4000)
    tmp = work_dir("tracking", args.keep)
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    base = [arg for role, path in CONFIGS.items() for arg in (f"--{role}", str(REPO / path))]
    base += ["--timesteps", str(timesteps), "--models-dir", str(tmp / "models"), "--model-name", "bench_tracking",
             "--experiment-name", "bench_tracking"]
    report = Report("bench_tracking", args.quick, sizes={"configs": CONFIGS, "timesteps": timesteps, "reps": reps})
    print(f"[bench_tracking] {timesteps} PPO steps per run (grid3_small, laptop execution); best of {reps}, alternated",
          flush=True)
    # The store exists before the timed runs; the worker's cwd keeps MLflow's ./mlruns in the temp folder.
    run_json_worker("_train_worker.py", {"setup_store": store}, tmp / "setup.log", cwd=tmp)
    count = {"n": 0}

    def train(tracked: bool):
        count["n"] += 1
        argv = base + (["--tracking-uri", store] if tracked else ["--no-mlflow"])
        result = run_json_worker("_train_worker.py", {"argv": argv}, tmp / f"train{count['n']}.log", cwd=tmp)
        result["_time"] = result["run_training_s"]
        return result

    runs = alternate({"untracked": lambda: train(False), "tracked": lambda: train(True)}, reps, "bench_tracking")
    plain = [r["_time"] for r in runs["untracked"]]
    tracked = [r["_time"] for r in runs["tracked"]]
    best_plain = min(plain)
    best = min(runs["tracked"], key=lambda r: r["_time"])
    report.samples = {"untracked_s": plain, "tracked_s": tracked,
                      "untracked_process_s": [r["process_wall_s"] for r in runs["untracked"]],
                      "tracked_process_s": [r["process_wall_s"] for r in runs["tracked"]],
                      "tracking_costs_s": [r["tracking_costs_s"] for r in runs["tracked"]],
                      "tracking_calls": best["tracking_calls"], "run_ids": [r["run_id"] for r in runs["tracked"]]}
    report.add(Ratio("training with MLflow tracking / without", min(tracked) / best_plain, TARGET,
                     f"best of {reps}: {min(tracked):.2f} s / {best_plain:.2f} s, {timesteps} steps"))
    report.add_cpu_ratio("training with tracking / without",
                         "tracked_cpu_s", [r["run_training_cpu_s"] for r in runs["tracked"]],
                         "untracked_cpu_s", [r["run_training_cpu_s"] for r in runs["untracked"]])
    direct = [sum(r["tracking_costs_s"].values()) for r in runs["tracked"]]
    cheapest = min(runs["tracked"], key=lambda r: sum(r["tracking_costs_s"].values()))
    costs = cheapest["tracking_costs_s"]  # the breakdown of the run with the smallest direct cost
    recurring_keys = RECURRING
    recurring = sum(v for k, v in costs.items() if k in recurring_keys)
    report.add(Ratio("tracking cost measured directly (mlflow import + MLflow calls) / untracked training", min(direct) / best_plain,
                     "<= 0.02", f"best of {reps}: {min(direct):.2f} s / {best_plain:.2f} s"))
    report.add(Ratio("  recurring part (metrics, checkpoint artifacts) / untracked training", recurring / best_plain, None,
                     f"{recurring * 1000:.0f} ms; the rest is paid once per run (imports, run start, policy registration)"))
    fixed = sum(costs.values()) - recurring
    share = recurring / best_plain
    if share < 0.02:
        report.note(f"tracking's once-per-run cost ({fixed:.2f} s) plus its recurring share stay under 2% from about "
                    f"{fixed / (0.02 - share):.0f} s of (untracked) training on")
    report.samples.update(fixed_tracking_s=fixed, recurring_tracking_s=recurring,
                          gc_s={"untracked": [r.get("gc_s") for r in runs["untracked"]],
                                "tracked": [r.get("gc_s") for r in runs["tracked"]]})
    for name, seconds in sorted(costs.items(), key=lambda kv: -kv[1]):
        calls = cheapest["tracking_calls"].get(name, 0)
        report.add(Ratio(f"    {name}", seconds / best_plain, None, f"{seconds * 1000:.0f} ms, {calls} calls"))
    return finish(report, tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())
