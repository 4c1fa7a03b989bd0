"""The evaluation's worker pool: one `src.cli` simulation per job, one libsumo SUMO per worker.

Workers start through 'forkserver' (or 'spawn'), which imports the caller's main module: a
script that runs jobs needs the usual `if __name__ == "__main__":` guard. A failed run comes
back as a record with an `error` message (its traceback in the run's `error.txt`); the pool
stops at the first one. Progress over the runs is a tqdm bar with ETA when stderr is a
terminal, plain `[done/total] ... elapsed, eta` lines otherwise (logs, SLURM), as in training.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, MutableMapping, Optional, Sequence, Tuple

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from src.argv import parse_simulation_params
from src.control.registry import PLUGINS_ENV
from src.metrics import METRIC_NAMES
from src.orchestration.simulation import run_simulation

logger = logging.getLogger(__name__)

Record = Dict[str, Any]

MATH_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def one_math_thread(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """One BLAS/OpenMP thread unless already chosen: where processes are the parallelism (one
    per core), math libraries that each start a thread per core would oversubscribe it."""
    for variable in MATH_THREAD_VARIABLES:
        environ.setdefault(variable, "1")
    return environ


@dataclass(frozen=True)
class Job:
    """One run of the matrix: its env-params string already holds controller, seed and folder."""

    scenario: str
    controller: str
    repeat: int
    sumo_seed: int
    env_params: str
    network_dir: str
    output_dir: str

    @property
    def label(self) -> str:
        return f"{self.scenario}/{self.controller}/rep{self.repeat}"

    def record(self, **values: Any) -> Record:
        """The run's record: the job's identity and `values` (metrics NaN unless given)."""
        base = {"scenario": self.scenario, "controller": self.controller, "repeat": self.repeat,
                "sumo_seed": self.sumo_seed, "output_dir": self.output_dir}
        return {**base, **{name: math.nan for name in METRIC_NAMES}, **values, "env_params": self.env_params}


def _init_worker(level: int, log_dir: str, plugins: Optional[str]) -> None:
    """One SUMO and one torch thread per worker: the pool is the parallelism.

    The worker's stderr (SUMO's warnings, which every run's sumo.log also holds, and log
    lines) goes to `log_dir/worker_<pid>.log`, so the console shows the progress only.
    `plugins` is the caller's controller plug-in list now: a fork server started earlier in
    the same process holds the environment of that moment, which workers would inherit.
    """
    if plugins is None:
        os.environ.pop(PLUGINS_ENV, None)
    else:
        os.environ[PLUGINS_ENV] = plugins
    one_math_thread(os.environ)
    if "torch" in sys.modules:  # preloaded by the fork server: its thread count is already set
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops the pool
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    log_file = open(Path(log_dir) / f"worker_{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115 - lives with the process
    os.dup2(log_file.fileno(), 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", stream=log_file, force=True)


def _run_job(job: Job) -> Record:
    """Run one simulation; errors come back as a message (the traceback goes to error.txt)."""
    started = time.perf_counter()
    try:
        result = run_simulation(parse_simulation_params(job.env_params), progress=False,
                                network_dir=Path(job.network_dir))
        record = job.record(**{name: float(result.metrics.get(name, math.nan)) for name in METRIC_NAMES}, error="")
    except Exception as err:  # noqa: BLE001 - reported by the main process as one line
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "error.txt").write_text(traceback.format_exc())
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        record = job.record(error=f"{type(err).__name__}: {first} (traceback in {out / 'error.txt'})")
    record["wall_time_s"] = time.perf_counter() - started
    return record


def _result_of(future: Future, job: Job) -> Record:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - the worker process died (e.g. SUMO crashed)
        return job.record(wall_time_s=math.nan, error=f"worker process failed: {type(err).__name__}: {err}")


def finished_records(jobs: Sequence[Job]) -> List[Record]:
    """Records of the jobs whose metrics.json exists (after an interruption)."""
    records = []
    for job in jobs:
        path = Path(job.output_dir) / "metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            records.append(job.record(**{name: metrics.get(name, math.nan) for name in METRIC_NAMES}, error=""))
    return records


def _pool_context(preload: Sequence[str]):
    """'forkserver' where there is one (workers fork from a clean server process), else 'spawn'.

    The fork server imports the simulation stack (and torch + SB3 when `rl` runs) once, so
    workers start without importing it each; this has no effect when this process's fork
    server already runs (it is started once per process and shared, e.g. with SB3's
    SubprocVecEnv).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", *preload])
        return context
    return multiprocessing.get_context("spawn")


class RunProgress:
    """Progress over the runs. A bar (`bar=None`: when stderr is a terminal) shows done/total,
    elapsed and ETA with each finished run's line above it; without a bar every finished run
    is one log line with done/total, elapsed and eta, readable in a log file."""

    def __init__(self, total: int, bar: Optional[bool] = None) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = tqdm(total=total, unit="run", desc="evaluation", dynamic_ncols=True) if use_bar else None

    def finished(self, job: Job, record: Record) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        timing = "" if self.bar is not None else f"; elapsed {elapsed:.0f} s, eta {eta:.0f} s"
        if record["error"]:
            logger.error("[%d/%d] %s FAILED: %s", self.done, self.total, job.label, record["error"])
        else:
            logger.info("[%d/%d] %s: mean travel time %.1f s (all trips %.1f s) in %.1f s%s", self.done, self.total,
                        job.label, record["mean_travel_time"], record["mean_travel_time_all"], record["wall_time_s"],
                        timing)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_jobs(jobs: Sequence[Job], workers: int, log_dir: Path,
             bar: Optional[bool] = None) -> Tuple[List[Record], Optional[Record]]:
    """Run every job in a process pool, with progress; stop at the first failure.

    Returns (records of the finished runs, the first failed record or None)."""
    total = len(jobs)
    workers = max(1, min(int(workers), total))
    logger.info("evaluating %d runs in %d worker processes", total, workers)
    started = time.perf_counter()
    records: List[Record] = []
    failed: Optional[Record] = None
    level = logging.WARNING if logger.getEffectiveLevel() > logging.DEBUG else logging.DEBUG
    preload = [__name__, "src.orchestration.simulation", "src.control.tree_method"]
    if any(job.controller == "rl" for job in jobs):
        preload += ["src.rl.controller", "stable_baselines3"]
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(preload), initializer=_init_worker,
                                   initargs=(level, str(log_dir), os.environ.get(PLUGINS_ENV)))
    progress = RunProgress(total, bar)
    try:
        # with a bar, log lines print above it instead of through it
        with logging_redirect_tqdm() if progress.bar is not None else nullcontext():
            pending = {executor.submit(_run_job, job): job for job in jobs}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    record = _result_of(future, job)
                    records.append(record)
                    progress.finished(job, record)
                    if record["error"] and failed is None:
                        failed = record
                        for other in pending:
                            other.cancel()
                pending = {f: j for f, j in pending.items() if not f.cancelled()}
    except BaseException:  # Ctrl-C: stop the running simulations too, keep what finished
        progress.close()
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    progress.close()
    executor.shutdown(wait=True)
    logger.info("%d runs in %.1f s", len(records), time.perf_counter() - started)
    return records, failed
