"""Shared pieces of the benchmarks: scenario sizes, plain `sumo` runs, ratio lines, result files.

Every benchmark measures its reference in the same run (the machine may be shared), so
only ratios are reported. Absolute times go into the JSON files for context only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# --- scenario sizes -----------------------------------------------------------------------

#: The heavy scenario (first scenario of rl/configs/scenarios/heavy_load.yaml on grid6_realistic).
HEAVY_NETWORK = ("--network-seed 24208 --grid_dimension 6 --junctions_to_remove 2 --block_size_m 280 "
                 "--lane_count realistic --step-length 1.0 --land_use_block_size_m 25 --attractiveness land_use "
                 "--signal-programs partial_opposites")
HEAVY_TRAFFIC = ("--private-traffic-seed 72632 --public-traffic-seed 27031 --routing_strategy 'realtime 100' "
                 "--vehicle_types 'passenger 100' --passenger-routes 'in 0 out 0 inner 100 pass 0' "
                 "--departure_pattern uniform --start_time_hour 8.0")
HEAVY_VEHICLES = 22000
HEAVY_END_TIME = 7200

#: The quick scenario: same kind of traffic on a 4x4 grid, a few thousand vehicles, 1800 s.
QUICK_NETWORK = ("--network-seed 24208 --grid_dimension 4 --junctions_to_remove 0 --block_size_m 200 "
                 "--lane_count realistic --step-length 1.0 --land_use_block_size_m 25 --attractiveness land_use "
                 "--signal-programs partial_opposites")
QUICK_TRAFFIC = HEAVY_TRAFFIC
QUICK_VEHICLES = 4000
QUICK_END_TIME = 1800


@dataclass
class Scenario:
    """An env-params string for `src.cli`, split so sizes can be changed and reported."""

    network: str
    traffic: str
    vehicles: int
    end_time: int
    label: str

    def params(self, private_seed: Optional[int] = None) -> str:
        traffic = self.traffic
        if private_seed is not None:
            traffic = traffic.replace("--private-traffic-seed 72632", f"--private-traffic-seed {private_seed}")
        return f"{self.network} {traffic} --num_vehicles {self.vehicles} --end-time {self.end_time}"

    def describe(self) -> Dict[str, Any]:
        return {"label": self.label, "vehicles": self.vehicles, "end_time_s": self.end_time,
                "env_params": self.params()}


def heavy_scenario(vehicles: Optional[int] = None, end_time: Optional[int] = None) -> Scenario:
    v, t = vehicles or HEAVY_VEHICLES, end_time or HEAVY_END_TIME
    return Scenario(HEAVY_NETWORK, HEAVY_TRAFFIC, v, t, f"6x6 heavy, {v} veh, {t} s")


def quick_scenario(vehicles: Optional[int] = None, end_time: Optional[int] = None) -> Scenario:
    v, t = vehicles or QUICK_VEHICLES, end_time or QUICK_END_TIME
    return Scenario(QUICK_NETWORK, QUICK_TRAFFIC, v, t, f"4x4 quick, {v} veh, {t} s")


def base_parser(description: str, default_reps: int, quick_reps: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole set runs in a few minutes")
    parser.add_argument("--reps", type=int, default=None,
                        help=f"repetitions of each measurement, best taken (default {default_reps}, quick {quick_reps})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    parser.set_defaults(_default_reps=default_reps, _quick_reps=quick_reps)
    return parser


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vehicles", type=int, default=None, help="number of vehicles (overrides the size's default)")
    parser.add_argument("--end-time", dest="end_time", type=int, default=None, help="simulated seconds (overrides the size's default)")


def reps_of(args: argparse.Namespace) -> int:
    if args.reps:
        return max(int(args.reps), 1)
    return args._quick_reps if args.quick else args._default_reps


# --- running things -----------------------------------------------------------------------


def python_env() -> Dict[str, str]:
    """Environment of worker processes: the repository importable, no inherited MLflow run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_s() -> float:
    """CPU seconds of this process (all threads) plus its finished children."""
    return time.process_time() + children_cpu_s()


def run_timed(cmd: Sequence[str], log_file: Path, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """Wall and CPU time of a subprocess; raises with the end of its log when it fails."""
    with open(log_file, "w") as log:
        c0 = children_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.run(list(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        elapsed = time.perf_counter() - t0
        cpu = children_cpu_s() - c0
    if proc.returncode != 0:
        tail = Path(log_file).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return {"wall_s": elapsed, "cpu_s": cpu}


def run_json_worker(script: str, payload: Dict[str, Any], log_file: Path, cwd: Optional[Path] = None) -> Dict[str, Any]:
    """Run `bench/<script>` with a JSON payload; its last stdout line is a JSON result."""
    cmd = [sys.executable, str(REPO / "bench" / script), json.dumps(payload)]
    c0 = children_cpu_s()
    t0 = time.perf_counter()
    with open(log_file, "w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=cwd, env=python_env())
    elapsed = time.perf_counter() - t0
    cpu = children_cpu_s() - c0
    if proc.returncode != 0:
        tail = Path(log_file).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"worker {script} failed ({proc.returncode}); log {log_file}:\n{tail}")
    lines = [l for l in proc.stdout.splitlines() if l.strip().startswith("{")]
    result = json.loads(lines[-1])
    result["process_wall_s"] = elapsed
    result["process_cpu_s"] = cpu
    return result


def plain_sumo_command(net_file: Path, route_files: Sequence[Path], out_dir: Path, end_time: float,
                       step_length: float, seed: int, additional_files: Sequence[Path] = ()) -> List[str]:
    """The project's own SUMO command line (`SumoSimulation.command()`), writing to `out_dir`."""
    from src.sumo_integration.simulation import SumoSimulation

    sim = SumoSimulation(net_file, route_files, out_dir, end_time, step_length=step_length, seed=seed,
                         additional_files=additional_files)
    return sim.command()


def run_plain_sumo(cmd: Sequence[str], out_dir: Path) -> Dict[str, float]:
    """Wall and CPU time of the plain `sumo` binary on a command line (process start to exit)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return run_timed(cmd, out_dir / "stdout.log")


def count_trips(tripinfo: Path) -> int:
    try:
        return Path(tripinfo).read_text(errors="replace").count("<tripinfo ")
    except OSError:
        return -1


def vehicle_seconds(tripinfo: Path) -> float:
    """Sum of trip durations in a tripinfo file (unfinished trips included): the traffic SUMO simulated."""
    import xml.etree.ElementTree as ET

    total = 0.0
    for _, elem in ET.iterparse(str(tripinfo)):
        if elem.tag == "tripinfo":
            total += float(elem.get("duration", 0.0))
        elem.clear()
    return total


def work_dir(name: str, keep: bool) -> Path:
    base = Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    path = Path(tempfile.mkdtemp(prefix=f"bench_{name}_", dir=base))
    if keep:
        print(f"[{name}] working folder: {path}")
    return path


# --- results ------------------------------------------------------------------------------


@dataclass
class Ratio:
    name: str
    value: float
    target: Optional[str] = None  # "<= 1.10", ">= 1.8" or None (informative)
    detail: str = ""

    @property
    def passed(self) -> Optional[bool]:
        if self.target is None:
            return None
        op, bound = self.target.split()
        return self.value <= float(bound) if op == "<=" else self.value >= float(bound)

    def line(self, unit: str = "x") -> str:
        target = f"(target {self.target}{unit})" if self.target else "(no target; informative)"
        verdict = "" if self.passed is None else ("  ok" if self.passed else "  MISSES TARGET")
        detail = f"  [{self.detail}]" if self.detail else ""
        return f"{self.name} = {self.value:.3f}{unit} {target}{verdict}{detail}"


@dataclass
class Report:
    bench: str
    quick: bool
    sizes: Dict[str, Any] = field(default_factory=dict)
    ratios: List[Ratio] = field(default_factory=list)
    samples: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    load_start: Sequence[float] = field(default_factory=lambda: os.getloadavg())

    def add(self, ratio: Ratio, unit: str = "x") -> Ratio:
        self.ratios.append(ratio)
        print(ratio.line(unit), flush=True)
        return ratio

    def add_cpu_ratio(self, label: str, key_a: str, cpu_a: List[float], key_b: str, cpu_b: List[float]) -> Ratio:
        """Record both CPU-time samples and add the best-of ratio a / b (less sensitive to other load)."""
        self.samples.update({key_a: cpu_a, key_b: cpu_b})
        return self.add(Ratio(f"  CPU time: {label}", min(cpu_a) / min(cpu_b), None,
                              f"user + system: {min(cpu_a):.2f} s / {min(cpu_b):.2f} s"))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.bench}_{'quick' if self.quick else 'full'}.json"
        data = {
            "bench": self.bench,
            "mode": "quick" if self.quick else "full",
            "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "duration_s": time.time() - self.started,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "loadavg_start": list(self.load_start), "loadavg_end": list(os.getloadavg())},
            "sizes": self.sizes,
            "ratios": [{"name": r.name, "value": r.value, "target": r.target, "passed": r.passed, "detail": r.detail}
                       for r in self.ratios],
            "samples": self.samples,
            "notes": self.notes,
        }
        path.write_text(json.dumps(data, indent=1, default=str))
        print(f"[{self.bench}] results: {path.relative_to(REPO)}  (load average {self.load_start[0]:.2f} -> "
              f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} cpus)", flush=True)
        return path


def alternate(measurements: Dict[str, Callable[[], Any]], reps: int, label: str = "") -> Dict[str, List[Any]]:
    """Run the measurements interleaved (A B A B ...), `reps` rounds; lists of results per name."""
    results: Dict[str, List[Any]] = {name: [] for name in measurements}
    for rep in range(reps):
        for name, fn in measurements.items():
            value = fn()
            results[name].append(value)
            shown = value if isinstance(value, (int, float)) else value.get("_time", "")
            if isinstance(shown, float):
                print(f"  [{label}] round {rep + 1}/{reps}: {name} {shown:.3f} s", flush=True)
    return results


class stderr_to_file:
    """Send this process's file descriptor 2 (SUMO's warnings through libsumo) to a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> "stderr_to_file":
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._file = open(self.path, "a")
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.close()


class TimedApi:
    """The SUMO api with `simulationStep` timed; everything else passes through."""

    def __init__(self, api) -> None:
        self._api = api
        self.simulation = api.simulation
        self.lane = api.lane
        self.trafficlight = api.trafficlight
        self.step_s = 0.0
        self.steps = 0

    def simulationStep(self, until: float = 0.0) -> None:  # noqa: N802 (SUMO's name)
        t0 = time.perf_counter()
        self._api.simulationStep(until)
        self.step_s += time.perf_counter() - t0
        self.steps += 1

    def __getattr__(self, name):
        return getattr(self._api, name)


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def parallel_capacity(work: int = 20_000_000) -> Dict[str, float]:
    """What 2 processes get from this machine right now: the same pure-CPU work done twice
    in one process, then once in each of 2 processes at the same time; speedup = serial / parallel
    (2.0 on 2 free cores, about 1.0 when another job holds a core)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    _spin(work)
    _spin(work)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_spin, args=(work,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    parallel = time.perf_counter() - t0
    return {"serial_s": serial, "parallel_s": parallel, "speedup": serial / parallel, "_time": parallel}


def finish(report: "Report", tmp: Path, keep: bool) -> int:
    """Save the report, remove the temporary folder unless kept; the script's exit code."""
    report.save()
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0
