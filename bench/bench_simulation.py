#!/usr/bin/env python
"""Simulation overhead: `python -m src.cli ... --traffic_control fixed` against a plain `sumo` run.

(a) simulate phase of the CLI run (`SimulationResult.timings['simulate_s']`: SUMO start
    through libsumo, stepping to the end time, close) / wall time of the plain `sumo`
    binary on the same net, routes, end time and seed, with the command line of
    `SumoSimulation.command()`.                                    target <= 1.10x
(b) prepare phase (`timings['prepare_s']`: build network + write routes) / that plain run.
                                                                    target <= 0.5x
Each CLI run is a fresh process that builds its own network and routes. The two
measurements alternate (CLI, sumo, CLI, sumo, ...); the best of N of each is compared.

    .venv/bin/python bench/bench_simulation.py [--quick] [--reps N] [--vehicles V] [--end-time T]
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (finish, Ratio, Report, add_size_arguments, alternate, base_parser, count_trips, heavy_scenario,  # noqa: E402
                    plain_sumo_command, quick_scenario, reps_of, run_json_worker, run_plain_sumo, work_dir)

TARGET_SIMULATE = "<= 1.10"
TARGET_PREPARE = "<= 0.5"


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], default_reps=2, quick_reps=3)
    add_size_arguments(parser)
    args = parser.parse_args()
    reps = reps_of(args)
    scenario = (quick_scenario if args.quick else heavy_scenario)(args.vehicles, args.end_time)
    report = Report("bench_simulation", args.quick, sizes={"scenario": scenario.describe(), "reps": reps})
    print(f"[bench_simulation] {scenario.label}; best of {reps}, alternated", flush=True)
    tmp = work_dir("simulation", args.keep)
    argv = shlex.split(scenario.params()) + ["--traffic_control", "fixed", "--quiet"]
    state = {"cli": 0, "plain": 0, "last": None}

    def cli_run():
        state["cli"] += 1
        out = tmp / f"cli{state['cli']}"
        result = run_json_worker("_cli_worker.py", {"argv": argv + ["--output-dir", str(out)]}, tmp / f"cli{state['cli']}.log")
        state["last"] = result
        result["_time"] = result["timings"]["simulate_s"]
        return result

    def plain_run():
        state["plain"] += 1
        sim = state["last"]["sim"]
        out = tmp / f"plain{state['plain']}"
        cmd = plain_sumo_command(Path(sim["net_file"]), [Path(p) for p in sim["route_files"]], out, sim["end_time"],
                                 sim["step_length"], sim["seed"], [Path(p) for p in sim["additional_files"]])
        timed = run_plain_sumo(cmd + sim["extra_args"], out)
        return {"_time": timed["wall_s"], "cpu_s": timed["cpu_s"], "trips": count_trips(out / "tripinfo.xml"), "cli_trips": count_trips(Path(state["last"]["tripinfo"])),
                "command": cmd}

    runs = alternate({"cli": cli_run, "plain": plain_run}, reps, "bench_simulation")
    simulate = [r["timings"]["simulate_s"] for r in runs["cli"]]
    prepare = [r["timings"]["prepare_s"] for r in runs["cli"]]
    process = [r["process_wall_s"] for r in runs["cli"]]
    plain = [r["_time"] for r in runs["plain"]]
    best_plain = min(plain)
    report.samples = {
        "cli_simulate_s": simulate, "cli_prepare_s": prepare, "cli_metrics_s": [r["timings"]["metrics_s"] for r in runs["cli"]],
        "cli_imports_s": [r["imports_s"] for r in runs["cli"]], "cli_process_wall_s": process, "plain_sumo_s": plain,
        "backend": runs["cli"][0]["sim"].get("backend"), "sumo_command": runs["plain"][0]["command"],
        "trips_plain": [r["trips"] for r in runs["plain"]], "trips_cli": [r["cli_trips"] for r in runs["plain"]],
        "metrics_cli": runs["cli"][0]["metrics"],
    }
    detail = f"best of {reps}: {min(simulate):.2f} s / {best_plain:.2f} s"
    report.add(Ratio("fixed-controller simulation / plain sumo", min(simulate) / best_plain, TARGET_SIMULATE, detail))
    report.add(Ratio("build network + routes / plain sumo", min(prepare) / best_plain, TARGET_PREPARE,
                     f"best of {reps}: {min(prepare):.2f} s / {best_plain:.2f} s"))
    report.add_cpu_ratio("fixed-controller simulation / plain sumo",
                         "cli_simulate_cpu_s", [r["simulate_cpu_s"] for r in runs["cli"]],
                         "plain_sumo_cpu_s", [r["cpu_s"] for r in runs["plain"]])
    report.add(Ratio("whole CLI process / plain sumo", min(process) / best_plain, None,
                     f"imports, prepare, simulate, metrics: {min(process):.2f} s"))
    if any(a != b for a, b in zip(report.samples["trips_plain"], report.samples["trips_cli"])):
        report.note(f"trip records differ between CLI and plain runs: {report.samples['trips_cli']} vs {report.samples['trips_plain']}")
    return finish(report, tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())
