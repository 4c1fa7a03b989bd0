"""Worker of bench_tracking: one `run_training` invocation in a fresh process, timings as JSON.

Argument: a JSON object {"argv": [...], "setup_store": uri (optional)}. With `setup_store`
it only creates the MLflow store (schema migration) and exits. Otherwise it parses `argv`
with the training scripts' arguments and times `run_training(args, "local")`. A tracked run
(no --no-mlflow) also imports the tracking module inside the timed span and times each
MLflow call of the pipeline (TrainingRun methods, MetricsBuffer, MLflowOutputFormat).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from collections import defaultdict


def _instrument(costs, counts) -> None:
    """Wrap the pipeline's MLflow calls with timers (outermost call only, so nesting is not counted twice)."""
    from src.tracking import run as tracking

    depth = [0]

    def wrap(owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    costs[label] += time.perf_counter() - t0
                    counts[label] += 1

        setattr(owner, name, timed)

    for name in ("__init__", "log_params", "set_tags", "log_config", "log_artifact", "log_artifacts", "log_policy", "end"):
        wrap(tracking.TrainingRun, name, f"TrainingRun.{name}")
    wrap(tracking.MetricsBuffer, "add", "MetricsBuffer.add (incl. flushes)")
    wrap(tracking.MetricsBuffer, "flush", "MetricsBuffer.flush")
    wrap(tracking.MLflowOutputFormat, "write", "MLflowOutputFormat.write (incl. flushes)")
    wrap(tracking, "git_commit", "git_commit")


def _gc_timer() -> dict:
    """Time spent in Python's garbage collector from now on (a larger heap makes full collections slower)."""
    import gc

    totals = {"s": 0.0, "n": 0, "gen2": 0, "_t0": 0.0}

    def callback(phase, info):
        if phase == "start":
            totals["_t0"] = time.perf_counter()
        else:
            totals["s"] += time.perf_counter() - totals["_t0"]
            totals["n"] += 1
            totals["gen2"] += info.get("generation") == 2

    gc.callbacks.append(callback)
    return totals


def main() -> int:
    payload = json.loads(sys.argv[1])
    if payload.get("setup_store"):
        from src.tracking.store import ensure_store

        ensure_store(payload["setup_store"])
        print(json.dumps({"store": payload["setup_store"]}))
        return 0
    # Modules both variants need, imported before the clock starts.
    from src.rl import config, pipeline, train_args, training  # noqa: F401
    from src.tracking import registry  # noqa: F401

    parser = argparse.ArgumentParser()
    train_args.add_common_arguments(parser)
    parser.add_argument("--all-scenarios", dest="all_scenarios", action="store_true")
    parser.add_argument("--single-env", dest="single_env", action="store_true")
    args = parser.parse_args(payload["argv"])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    costs, counts = defaultdict(float), defaultdict(int)

    def cpu_now() -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + usage.ru_utime + usage.ru_stime

    gc_time = _gc_timer()
    c0, t0 = cpu_now(), time.perf_counter()
    if not args.no_mlflow:
        _instrument(costs, counts)  # imports src.tracking.run (mlflow): a cost of tracking, inside the span
        costs["import src.tracking.run (mlflow)"] += time.perf_counter() - t0
        counts["import src.tracking.run (mlflow)"] += 1
    outcome = pipeline.run_training(args, "local")
    elapsed, cpu = time.perf_counter() - t0, cpu_now() - c0
    print(json.dumps({"run_training_s": elapsed, "run_training_cpu_s": cpu,
                      "gc_s": gc_time["s"], "gc_collections": gc_time["n"], "gc_gen2": gc_time["gen2"], "num_timesteps": outcome.num_timesteps, "run_id": outcome.run_id,
                      "model_dir": str(outcome.model_dir), "tracking_costs_s": dict(costs), "tracking_calls": dict(counts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
