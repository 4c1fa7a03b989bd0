#!/usr/bin/env python
"""A published study run through the project against plain `sumo -c` on the same files.

`python -m src.cli --sumocfg <study>/simulation.sumocfg.xml --traffic_control C` (whole
process: build, simulate, metrics) / `sumo -c <the same sumocfg> --seed S`, wall and CPU
time, measured alternately, best of N:
    actuated, fixed (Uniform, --cycle-length 90)                     target <= 1.10x
    tree_method (--cycle-length 90 --min-green 10)                   target <= 1.30x
Per vehicle update as well (vehicle-seconds from each run's trip records): a controller that
moves traffic better simulates fewer vehicles, which makes its plain ratio look cheaper.
Not in `run_all.py --quick`: one round is about 5 minutes on 2 cores.

    .venv/bin/python bench/bench_study.py [--study ../shared/reference-data/tree-method-study/experiment1-run2] [--reps N]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Ratio, Report, alternate, base_parser, finish, python_env, reps_of, run_timed, vehicle_seconds, work_dir  # noqa: E402

DEFAULT_STUDY = REPO.parent / "shared/reference-data/tree-method-study/experiment1-run2"
CONTROLLERS = {
    "actuated": (["--cycle-length", "90", "--min-green", "10"], "<= 1.10"),
    "fixed": (["--cycle-length", "90", "--min-green", "10"], "<= 1.10"),
    "tree_method": (["--cycle-length", "90", "--min-green", "10"], "<= 1.30"),
}


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], default_reps=2, quick_reps=1)
    parser.add_argument("--study", type=Path, default=DEFAULT_STUDY, help="a folder with simulation.sumocfg.xml")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sumocfg = args.study / "simulation.sumocfg.xml"
    if not sumocfg.is_file():
        print(f"error: {sumocfg} does not exist (give --study)", file=sys.stderr)
        return 2
    reps = reps_of(args)
    report = Report("bench_study", args.quick, sizes={"study": str(args.study), "seed": args.seed, "reps": reps})
    tmp = work_dir("study", args.keep)
    sumo = Path(sys.executable).with_name("sumo")
    counter = {"n": 0}

    def project(controller: str):
        def run():
            counter["n"] += 1
            out = tmp / f"{controller}{counter['n']}"
            extra, _ = CONTROLLERS[controller]
            timed = run_timed([sys.executable, "-m", "src.cli", "--sumocfg", str(sumocfg), "--traffic_control", controller,
                               "--sumo-seed", str(args.seed), "--output-dir", str(out), "--quiet", *extra],
                              tmp / f"{controller}{counter['n']}.log", cwd=REPO, env=python_env())
            return {**timed, "_time": timed["wall_s"], "vehicle_s": vehicle_seconds(out / "tripinfo.xml")}
        return run

    def plain():
        counter["n"] += 1
        out = tmp / f"plain{counter['n']}"
        out.mkdir()
        timed = run_timed([str(sumo), "-c", str(sumocfg), "--seed", str(args.seed), "--tripinfo-output",
                           str(out / "tripinfo.xml"), "--tripinfo-output.write-unfinished"], out / "stdout.log")
        return {**timed, "_time": timed["wall_s"], "vehicle_s": vehicle_seconds(out / "tripinfo.xml")}

    runs = alternate({"plain": plain, **{c: project(c) for c in CONTROLLERS}}, reps, "bench_study")
    best = {name: min(results, key=lambda r: r["wall_s"]) for name, results in runs.items()}
    base = best["plain"]
    report.samples = {name: results for name, results in runs.items()}
    for controller, (_, target) in CONTROLLERS.items():
        mine = best[controller]
        report.add(Ratio(f"{controller} study run / plain sumo", mine["wall_s"] / base["wall_s"], target,
                         f"best of {reps}: {mine['wall_s']:.1f} s / {base['wall_s']:.1f} s"))
        report.add(Ratio(f"  CPU time: {controller}", min(r["cpu_s"] for r in runs[controller]) /
                         min(r["cpu_s"] for r in runs["plain"]), None))
        per_vehicle = (mine["cpu_s"] / mine["vehicle_s"]) / (base["cpu_s"] / base["vehicle_s"])
        report.add(Ratio(f"  per vehicle-second (CPU): {controller}", per_vehicle, None,
                         f"{mine['vehicle_s'] / 1e6:.2f} M / {base['vehicle_s'] / 1e6:.2f} M vehicle-seconds"))
    return finish(report, tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())
