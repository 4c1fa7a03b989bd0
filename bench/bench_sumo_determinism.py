#!/usr/bin/env python
"""Is a map's simulation the same every time? Each study of a maps folder, run N times with one
SUMO seed through libsumo (one process, one run after another, as an evaluation worker does) and
N times as plain `sumo -c`: the distinct outcomes (tripinfo contents) and their mean durations.

Found on RESCO's cologne1 with SUMO 1.28 (2026-12-07): libsumo gives one of two outcomes for the
same seed and files (mean all-trips travel time 63.6 or 65.2 s on seed 100001; 2 to 6 runs in 10
take the second), where the binary gave the first every time (34 runs); TraCI runs showed the second
outcome too. The six other maps repeat exactly. A table cell of cologne1 can therefore move by
about a second between two identical evaluations; differences far larger than that are real.

    .venv/bin/python bench/bench_sumo_determinism.py --maps ../shared/reference-data/resco [--only cologne1] [--runs 10]

Exit 1 when a map's libsumo runs do not all agree.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_resco_fixed import completed_trips  # noqa: E402

from src.sumo_integration.simulation import _import_libsumo  # noqa: E402
from src.sumo_integration.sumocfg import read_sumocfg  # noqa: E402
from src.sumo_integration.tools import sumo_binary  # noqa: E402


def outcome(tripinfo: Path) -> Tuple[str, float]:
    """A fingerprint of the trips (the header, which names the output file and date, left out)
    and their mean duration."""
    trips = b"".join(line for line in tripinfo.read_bytes().splitlines(keepends=True) if b"<tripinfo " in line)
    return hashlib.md5(trips).hexdigest()[:8], completed_trips(tripinfo)["mean_duration"]


def repeated_outcomes(sumocfg: Path, runs: int, seed: int, work: Path) -> Dict[str, collections.Counter]:
    """Outcome counts of `runs` libsumo runs in this process and `runs` runs of the binary."""
    libsumo = _import_libsumo()
    end = read_sumocfg(sumocfg).end
    tripinfo = work / "tripinfo.xml"
    common = ["-c", str(sumocfg), "--seed", str(seed), "--tripinfo-output", str(tripinfo), "--no-step-log", "true",
              "--no-warnings", "true"]
    found: Dict[str, collections.Counter] = {"libsumo": collections.Counter(), "binary": collections.Counter()}
    for _ in range(runs):
        libsumo.start(["sumo", *common])
        if end is None:  # no end in the config: until the last vehicle arrived
            while libsumo.simulation.getMinExpectedNumber() > 0:
                libsumo.simulationStep()
        else:
            libsumo.simulationStep(float(end))
        libsumo.close()
        found["libsumo"][outcome(tripinfo)] += 1
    binary = sumo_binary("sumo")
    for _ in range(runs):
        subprocess.run([binary, *common], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found["binary"][outcome(tripinfo)] += 1
    return found


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", required=True, type=Path, help="a folder of map folders, each with one .sumocfg")
    parser.add_argument("--only", default="", help="these maps only (comma list)")
    parser.add_argument("--runs", type=int, default=10, help="runs per map and way (default 10)")
    parser.add_argument("--seed", type=int, default=100001, help="the SUMO seed of every run")
    args = parser.parse_args(argv)
    wanted = {name for name in args.only.split(",") if name}
    varying = []
    for folder in sorted(p for p in args.maps.iterdir() if p.is_dir() and (not wanted or p.name in wanted)):
        configs = sorted(folder.glob("*.sumocfg"))
        if not configs:
            continue
        with tempfile.TemporaryDirectory() as work:
            found = repeated_outcomes(configs[0], args.runs, args.seed, Path(work))
        for way, counts in found.items():
            shown = ", ".join(f"{key} x{n} (mean duration {mean:.2f} s)" for (key, mean), n in counts.most_common())
            print(f"{folder.name:14s} {way:8s} {len(counts)} outcome(s): {shown}", flush=True)
        if len(found["libsumo"]) > 1:
            varying.append(folder.name)
    print(f"maps whose libsumo runs differ: {', '.join(varying) or 'none'}")
    return 1 if varying else 0


if __name__ == "__main__":
    sys.exit(main())
