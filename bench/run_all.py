#!/usr/bin/env python
"""Run every benchmark one after the other and print a summary table of their ratios.

    .venv/bin/python bench/run_all.py [--quick] [--only simulation,tree_method] [--vehicles V] [--end-time T]

Each benchmark runs as its own process (`bench/bench_<name>.py`), prints its lines as it
goes and writes `bench/results/bench_<name>_<quick|full>.json`; the table is built from
those files. `--vehicles` / `--end-time` are passed to the benchmarks that run the
simulation scenario (simulation, rl_env, tree_method). Exit code 1 when a ratio misses its
target, 2 when a benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, RESULTS_DIR  # noqa: E402

BENCHMARKS = ("simulation", "rl_env", "tracking", "tree_method")
SIZED = ("simulation", "rl_env", "tree_method")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes in all)")
    parser.add_argument("--only", default=None, help=f"comma list of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions for every benchmark (default: each one's own)")
    parser.add_argument("--vehicles", type=int, default=None)
    parser.add_argument("--end-time", dest="end_time", type=int, default=None)
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; allowed: {', '.join(BENCHMARKS)}")
    mode = "quick" if args.quick else "full"
    failed, started = [], time.time()
    for name in names:
        cmd = [sys.executable, str(REPO / "bench" / f"bench_{name}.py")]
        if args.quick:
            cmd.append("--quick")
        if args.reps:
            cmd += ["--reps", str(args.reps)]
        if name in SIZED:
            if args.vehicles:
                cmd += ["--vehicles", str(args.vehicles)]
            if args.end_time:
                cmd += ["--end-time", str(args.end_time)]
        print(f"\n=== bench_{name} ({mode}) ===", flush=True)
        result_file = RESULTS_DIR / f"bench_{name}_{mode}.json"
        before = result_file.stat().st_mtime if result_file.exists() else None
        proc = subprocess.run(cmd, cwd=REPO)
        fresh = result_file.exists() and result_file.stat().st_mtime != before
        if proc.returncode != 0 or not fresh:
            failed.append(name)
            print(f"bench_{name} failed (exit code {proc.returncode})", flush=True)
    rows, misses = [], 0
    for name in names:
        path = RESULTS_DIR / f"bench_{name}_{mode}.json"
        if name in failed or not path.exists():
            rows.append((f"bench_{name}: FAILED", "", "", ""))
            continue
        data = json.loads(path.read_text())
        for r in data["ratios"]:
            if r["name"].startswith(" "):
                continue  # details of the line above: in the benchmark's own output and JSON
            verdict = "" if r["passed"] is None else ("ok" if r["passed"] else "MISS")
            misses += r["passed"] is False
            rows.append((r["name"], f"{r['value']:.3f}x", r["target"] and f"{r['target']}x" or "-", verdict))
    width = max(len(r[0]) for r in rows)
    print(f"\n=== summary ({mode}, {time.time() - started:.0f} s; machine load may vary, see bench/results/*.json) ===")
    print(f"{'ratio':<{width}}  {'value':>8}  {'target':>9}  result")
    for name, value, target, verdict in rows:
        print(f"{name:<{width}}  {value:>8}  {target:>9}  {verdict}")
    if failed:
        return 2
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
