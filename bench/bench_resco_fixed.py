#!/usr/bin/env python
"""`fixed` on every study of a maps folder against plain `sumo -c` on the same files.

A map's own signal programs, run through the project from the map's own begin, must give
exactly what SUMO gives alone: the same arrived count and the same mean trip duration (same
SUMO seed). Per map it prints the signals, the range of green phases per junction, the time
span and both results with their wall times; exit 1 when a map differs.

    .venv/bin/python bench/bench_resco_fixed.py --maps ../shared/reference-data/resco [--seed S] [--keep]

`compare_fixed_with_plain` is the check for one study (the RESCO suite reuses it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, python_env, run_timed  # noqa: E402

from src.network.phases import read_phase_plans  # noqa: E402
from src.sumo_integration.sumocfg import read_sumocfg  # noqa: E402


def completed_trips(tripinfo: Path) -> Dict[str, float]:
    """Arrived count and mean duration of the completed trips of a tripinfo file."""
    arrived, total = 0, 0.0
    for _, elem in ET.iterparse(str(tripinfo)):
        if elem.tag == "tripinfo" and float(elem.get("arrival", "-1")) >= 0:
            arrived += 1
            total += float(elem.get("duration", "0"))
        elem.clear()
    return {"arrived": arrived, "mean_duration": total / arrived if arrived else float("nan")}


def study_summary(sumocfg: Path) -> Dict[str, Any]:
    """Signals, green phases per junction (min, max) and the time span of a study."""
    study = read_sumocfg(sumocfg)
    phases = [p.num_phases for p in read_phase_plans(study.net_file).values()]
    return {"signals": len(phases), "phases_min": min(phases, default=0), "phases_max": max(phases, default=0),
            "begin": study.begin, "end": study.end}


def compare_fixed_with_plain(sumocfg: Path, work: Path, seed: int = 0) -> Dict[str, Any]:
    """Run `fixed` through `python -m src.cli --sumocfg` and plain `sumo -c`; both results."""
    sumocfg = Path(sumocfg).resolve()
    sumo = Path(sys.executable).with_name("sumo")
    ours_dir, plain_dir = work / "fixed", work / "plain"
    work.mkdir(parents=True, exist_ok=True)
    plain_dir.mkdir(parents=True, exist_ok=True)
    ours = run_timed([sys.executable, "-m", "src.cli", "--sumocfg", str(sumocfg), "--traffic_control", "fixed",
                      "--sumo-seed", str(seed), "--output-dir", str(ours_dir), "--quiet"],
                     work / "fixed.log", cwd=REPO, env=python_env())
    plain = run_timed([str(sumo), "-c", str(sumocfg), "--seed", str(seed), "--tripinfo-output",
                       str(plain_dir / "tripinfo.xml"), "--tripinfo-output.write-unfinished", "true",
                       "--no-step-log", "true"], plain_dir / "stdout.log")
    mine, theirs = completed_trips(ours_dir / "tripinfo.xml"), completed_trips(plain_dir / "tripinfo.xml")
    same = mine["arrived"] == theirs["arrived"] and abs(mine["mean_duration"] - theirs["mean_duration"]) < 1e-6
    return {"fixed": {**mine, "wall_s": ours["wall_s"]}, "plain": {**theirs, "wall_s": plain["wall_s"]}, "same": same}


def find_studies(maps: Path) -> List[Path]:
    """Every `*.sumocfg` one folder below `maps` (one map per folder), by name."""
    return sorted(maps.glob("*/*.sumocfg"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=Path, required=True, help="a folder of map folders, each with a .sumocfg")
    parser.add_argument("--seed", type=int, default=0, help="SUMO seed of both runs")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    studies = find_studies(args.maps)
    if not studies:
        print(f"error: no */*.sumocfg under {args.maps}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_resco_fixed_"))
    print(f"{'map':<14} {'signals':>7} {'phases':>6} {'begin':>6} {'end':>6}  {'arrived fixed/plain':>19}  "
          f"{'mean duration fixed/plain (s)':>29}  {'wall fixed/plain (s)':>20}  same")
    failed = 0
    for sumocfg in studies:
        info = study_summary(sumocfg)
        result = compare_fixed_with_plain(sumocfg, work / sumocfg.stem, args.seed)
        f, p = result["fixed"], result["plain"]
        failed += not result["same"]
        print(f"{sumocfg.stem:<14} {info['signals']:>7} {info['phases_min']:>2}..{info['phases_max']:<2} "
              f"{info['begin']:>6.0f} {info['end']:>6.0f}  {f['arrived']:>9}/{p['arrived']:<9}  "
              f"{f['mean_duration']:>14.3f}/{p['mean_duration']:<14.3f}  {f['wall_s']:>9.1f}/{p['wall_s']:<9.1f}  "
              f"{'yes' if result['same'] else 'NO'}")
    if args.keep:
        print(f"working folder: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
