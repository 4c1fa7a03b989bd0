"""Compare signal controllers on held-out scenarios: scenario x controller x repeat.

The network is built once; every run is one `src.cli` simulation (its env-params string is
the training string of its scenario with the controller, SUMO seed, output folder and model
put in), run in a pool of worker processes with one libsumo SUMO each. Repeat `k` runs with
SUMO seed `base_seed + k`, so repeats differ in SUMO's own randomness (driver imperfection,
departure lanes) while a scenario, a controller and a seed always give the same numbers.

Outputs in `out_dir`:
    network/                 the shared network
    runs/<scenario>/<controller>/rep<k>/   routes, trip records, metrics.json of each run
    evaluation_runs.csv      one row per run (metrics, seed, wall time, env-params string)
    evaluation.csv           one row per scenario x controller: mean and std over repeats,
                             change of the travel times against fixed and actuated (%)
    evaluation.json          what was evaluated (inputs, model resolution), read by
                             `log_evaluation_to_mlflow`
    logs/worker_<pid>.log    each worker's stderr (SUMO warnings are also in each run's sumo.log)
    resolved_config.yaml     the loaded configuration (config mode)

Workers start through 'forkserver' (or 'spawn'), which imports the caller's main module: a
script calling `evaluate_controllers` needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import re
import shlex
import signal
import sys
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd

from src import params as P
from src.control.registry import controller_names
from src.metrics import METRIC_NAMES

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Controllers a change in percent is computed against (when they were run).
BASELINES = ("fixed", "actuated")
#: Metrics whose change against the baselines is reported.
RELATIVE_METRICS = ("mean_travel_time", "mean_travel_time_all", "mean_time_loss_all")
#: RESCO's "delay": time loss plus insertion delay over every planned trip, never-inserted ones
#: included (`mean_time_loss_all` of `src.metrics`).
DELAY_LABEL = "delay (RESCO)"
TABLE_FILE = "evaluation.csv"
RUNS_FILE = "evaluation_runs.csv"
MANIFEST_FILE = "evaluation.json"
CHART_FILE = "mean_travel_time.png"
#: Route file suffixes dropped to name a scenario after its file.
_ROUTE_SUFFIXES = (".rou.xml", ".trips.xml", ".routes.xml", ".xml")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class EvaluationError(ValueError):
    """A problem the user can fix (config, controller list, path, model URI); one-line message."""


class EvaluationRunError(RuntimeError):
    """A simulation of the matrix failed; the message names the run and where its log is."""


@dataclass(frozen=True)
class _Job:
    scenario: str
    controller: str
    repeat: int
    sumo_seed: int
    env_params: str
    network_dir: str
    output_dir: str


# --- inputs -------------------------------------------------------------------------------------


def parse_controllers(controllers: Union[str, Sequence[str]]) -> List[str]:
    """A comma list or sequence of controller names, checked, duplicates dropped, order kept."""
    items = controllers.split(",") if isinstance(controllers, str) else list(controllers)
    names: List[str] = []
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        if name not in controller_names():
            raise EvaluationError(f"--controllers: unknown controller {name!r}; allowed: {', '.join(controller_names())}")
        if name not in names:
            names.append(name)
    if not names:
        raise EvaluationError(f"--controllers: no controller given; allowed: {', '.join(controller_names())}")
    return names


def scenario_name_for_route_file(path: PathLike) -> str:
    """`a.rou.xml` -> `a`: a route file's name as a scenario name (letters, digits, _ . -)."""
    name = Path(path).name
    for suffix in _ROUTE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    name = _NAME_CHARS.sub("_", name).strip("_") or "routes"
    return name if name[0].isalnum() else f"r{name}"


def _set_option(tokens: List[str], spellings: Sequence[str], value: str) -> List[str]:
    """Replace the value of an option (any of its spellings) or append it."""
    for i, token in enumerate(tokens[:-1]):
        if token in spellings:
            tokens[i + 1] = value
            return tokens
    return tokens + [spellings[0], value]


def _run_params(base: str, controller: str, seed: int, output_dir: Path, model_path: Optional[str]) -> str:
    tokens = shlex.split(base)
    tokens = _set_option(tokens, ("--traffic_control", "--traffic-control"), controller)
    tokens = _set_option(tokens, ("--sumo-seed", "--sumo_seed"), str(seed))
    tokens = _set_option(tokens, ("--output-dir", "--output_dir"), str(output_dir))
    if controller == "rl":
        tokens = _set_option(tokens, ("--model-path", "--model_path"), str(model_path))
    return shlex.join(tokens)


def _empty_yaml(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text("# not used by the evaluation: defaults\n")
    return path


def _load_config(network_config: Path, scenarios_file: Path, end_time: Optional[int], execution_config: Optional[Path]):
    """The network and scenarios files through the training loader (defaults for the rest)."""
    from src.rl.experiment_config import ConfigError, load_modular_config

    overrides = {"end_time": end_time} if end_time is not None else None
    try:
        with tempfile.TemporaryDirectory(prefix="evaluation_config_") as folder:
            algorithm = _empty_yaml(Path(folder), "algorithm")
            reward = _empty_yaml(Path(folder), "reward")
            execution = Path(execution_config) if execution_config else _empty_yaml(Path(folder), "execution")
            config = load_modular_config(network_config, scenarios_file, algorithm, reward, execution, overrides=overrides)
    except ConfigError as err:
        raise EvaluationError(str(err)) from None
    sources = {"network": str(network_config), "scenarios": str(scenarios_file)}
    if execution_config:
        sources["execution"] = str(execution_config)
    return replace(config, source_files=sources)


def _resolve_model(model: Optional[str], tracking_uri: Optional[str]) -> Dict[str, Optional[str]]:
    """A model path or URI -> local policy file and where it came from; EvaluationError if not found."""
    from src.tracking.registry import ModelResolutionError, resolve_model_uri

    try:
        resolved = resolve_model_uri(str(model), tracking_uri)
    except (ModelResolutionError, FileNotFoundError) as err:
        message = re.sub(r"^(--resume-from/)?--model-path: ", "", str(err))
        raise EvaluationError(f"--model: {message}") from None
    resolved_uri = str(resolved.local_path.resolve())
    if resolved.registered_name and resolved.version:
        resolved_uri = f"models:/{resolved.registered_name}/{resolved.version}"
    elif resolved.run_id:
        resolved_uri = resolved.uri
    return {
        "uri": str(model),
        "resolved_uri": resolved_uri,
        "local_path": str(resolved.local_path.resolve()),
        "run_id": resolved.run_id,
        "registered_name": resolved.registered_name,
        "version": resolved.version,
    }


def _check_model_fits(model_file: Path, network_dir: Path, model: str) -> None:
    from src.rl.training import model_dimensions
    from src.rl.utils import IncompatibleModelError, check_compatible, read_model_metadata

    try:
        metadata = read_model_metadata(model_file)
        dims = model_dimensions(metadata, network_dir)  # the model's own control mode and sharing
        check_compatible(metadata, dims["observation"], dims["action"], f"--model {model}")
    except (IncompatibleModelError, FileNotFoundError) as err:
        raise EvaluationError(str(err)) from None
    except (KeyError, ValueError) as err:  # feature names the engine does not know
        raise EvaluationError(f"--model {model}: does not fit this network: {err}") from None


# --- the worker ---------------------------------------------------------------------------------


def _init_worker(level: int, log_dir: str) -> None:
    """One SUMO and one torch thread per worker: the pool is the parallelism.

    The worker's stderr (SUMO's warnings, which every run's sumo.log also holds, and log
    lines) goes to `log_dir/worker_<pid>.log`, so the console shows the progress lines only.
    """
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    if "torch" in sys.modules:  # preloaded by the fork server: its thread count is already set
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops the pool
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    log_file = open(Path(log_dir) / f"worker_{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115 - lives with the process
    os.dup2(log_file.fileno(), 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", stream=log_file, force=True)


def _run_job(job: _Job) -> Dict[str, Any]:
    """Run one simulation; errors come back as a message (the traceback goes to error.txt)."""
    started = time.perf_counter()
    record: Dict[str, Any] = {"scenario": job.scenario, "controller": job.controller, "repeat": job.repeat,
                              "sumo_seed": job.sumo_seed, "output_dir": job.output_dir}
    try:
        from src.cli import parse_simulation_params
        from src.orchestration.simulation import run_simulation

        params = parse_simulation_params(job.env_params)
        result = run_simulation(params, progress=False, network_dir=Path(job.network_dir))
        record.update({name: float(result.metrics.get(name, math.nan)) for name in METRIC_NAMES})
        record["error"] = ""
    except Exception as err:  # noqa: BLE001 - reported by the main process as one line
        out = Path(job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "error.txt").write_text(traceback.format_exc())
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        record.update({name: math.nan for name in METRIC_NAMES})
        record["error"] = f"{type(err).__name__}: {first} (traceback in {out / 'error.txt'})"
    record["wall_time_s"] = time.perf_counter() - started
    record["env_params"] = job.env_params
    return record


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


def _run_jobs(jobs: Sequence[_Job], workers: int, log_dir: Path):
    """Run every job in a process pool, with progress lines; stop at the first failure.

    Returns (records of the finished runs, the first failed record or None)."""
    total = len(jobs)
    workers = max(1, min(int(workers), total))
    logger.info("evaluating %d runs in %d worker processes", total, workers)
    started = time.perf_counter()
    records: List[Dict[str, Any]] = []
    failed: Optional[Dict[str, Any]] = None
    level = logging.WARNING if logger.getEffectiveLevel() > logging.DEBUG else logging.DEBUG
    preload = ["src.orchestration.evaluate", "src.orchestration.simulation", "src.control.tree_method"]
    if any(job.controller == "rl" for job in jobs):
        preload += ["src.rl.controller", "stable_baselines3"]
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(preload), initializer=_init_worker,
                                   initargs=(level, str(log_dir)))
    try:
        pending = {executor.submit(_run_job, job): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                record = _result_of(future, job)
                records.append(record)
                elapsed = time.perf_counter() - started
                eta = elapsed / len(records) * (total - len(records))
                label = f"{job.scenario}/{job.controller}/rep{job.repeat}"
                if record["error"]:
                    logger.error("[%d/%d] %s FAILED: %s", len(records), total, label, record["error"])
                    if failed is None:
                        failed = record
                        for other in pending:
                            other.cancel()
                else:
                    logger.info("[%d/%d] %s: mean travel time %.1f s (all trips %.1f s) in %.1f s; elapsed %.0f s, "
                                "eta %.0f s", len(records), total, label, record["mean_travel_time"],
                                record["mean_travel_time_all"], record["wall_time_s"], elapsed, eta)
            pending = {f: j for f, j in pending.items() if not f.cancelled()}
    except BaseException:  # Ctrl-C: stop the running simulations too, keep what finished
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    logger.info("%d runs in %.1f s", len(records), time.perf_counter() - started)
    return records, failed


def _finished_records(jobs: Sequence[_Job]) -> List[Dict[str, Any]]:
    """Records of the jobs whose metrics.json exists (after an interruption)."""
    records = []
    for job in jobs:
        path = Path(job.output_dir) / "metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            records.append({**{name: metrics.get(name, math.nan) for name in METRIC_NAMES}, "scenario": job.scenario,
                            "controller": job.controller, "repeat": job.repeat, "sumo_seed": job.sumo_seed,
                            "output_dir": job.output_dir, "env_params": job.env_params, "error": ""})
    return records


def _result_of(future: Future, job: _Job) -> Dict[str, Any]:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - the worker process died (e.g. SUMO crashed)
        record = {"scenario": job.scenario, "controller": job.controller, "repeat": job.repeat,
                  "sumo_seed": job.sumo_seed, "output_dir": job.output_dir, "wall_time_s": math.nan,
                  "env_params": job.env_params, "error": f"worker process failed: {type(err).__name__}: {err}"}
        record.update({name: math.nan for name in METRIC_NAMES})
        return record


# --- the table ----------------------------------------------------------------------------------


def runs_frame(records: Sequence[Mapping[str, Any]], scenarios: Sequence[str], controllers: Sequence[str]) -> pd.DataFrame:
    """Per-run records as a frame in matrix order (scenario, controller, repeat)."""
    columns = ["scenario", "controller", "repeat", "sumo_seed", *METRIC_NAMES, "wall_time_s", "error", "output_dir",
               "env_params"]
    frame = pd.DataFrame(list(records))
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    frame = frame[columns]
    order_s = {name: k for k, name in enumerate(scenarios)}
    order_c = {name: k for k, name in enumerate(controllers)}
    frame = frame.assign(_s=frame["scenario"].map(order_s), _c=frame["controller"].map(order_c))
    return frame.sort_values(["_s", "_c", "repeat"]).drop(columns=["_s", "_c"]).reset_index(drop=True)


def summarize_runs(runs: pd.DataFrame, scenarios: Sequence[str], controllers: Sequence[str]) -> pd.DataFrame:
    """One row per scenario x controller: mean and std (sample, ddof 1) of every metric over
    the repeats, and the change of the travel times against fixed and actuated in percent."""
    ok = runs[runs["error"].fillna("") == ""] if "error" in runs else runs
    rows = []
    for scenario in scenarios:
        for controller in controllers:
            sub = ok[(ok["scenario"] == scenario) & (ok["controller"] == controller)]
            if sub.empty:
                continue
            row: Dict[str, Any] = {"scenario": scenario, "controller": controller, "repeats": int(len(sub))}
            for name in METRIC_NAMES:
                values = pd.to_numeric(sub[name], errors="coerce")
                row[f"{name}_mean"] = float(values.mean())
                row[f"{name}_std"] = float(values.std(ddof=1)) if values.count() > 1 else math.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for name in RELATIVE_METRICS:
        for baseline in BASELINES:
            reference = table[table["controller"] == baseline].set_index("scenario")[f"{name}_mean"]
            base = table["scenario"].map(reference)
            table[f"{name}_vs_{baseline}_pct"] = (table[f"{name}_mean"] / base - 1.0) * 100.0
    return table


def format_table(table: pd.DataFrame) -> str:
    """The main columns as text: 'mean ± std' of the travel times, completion, change vs baselines."""
    if table.empty:
        return "(no results)"
    shown = pd.DataFrame({"scenario": table["scenario"], "controller": table["controller"], "n": table["repeats"]})

    def pm(name: str, digits: int = 1) -> pd.Series:
        mean, std = table[f"{name}_mean"], table[f"{name}_std"]
        return pd.Series([f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if not math.isnan(s) else "")
                          for m, s in zip(mean, std)], index=table.index)

    shown["travel_time"] = pm("mean_travel_time")
    shown["travel_time_all"] = pm("mean_travel_time_all")
    shown[DELAY_LABEL] = pm("mean_time_loss_all")
    shown["waiting_time"] = pm("mean_waiting_time")
    shown["completion"] = pm("completion_rate", 3)
    shown["throughput/h"] = table["throughput_per_hour_mean"].map(lambda v: f"{v:.0f}")
    shown["teleports"] = table["teleports_mean"].map(lambda v: f"{v:.1f}")
    for baseline in BASELINES:
        column = f"mean_travel_time_vs_{baseline}_pct"
        if column in table and table[column].notna().any():
            shown[f"vs_{baseline}"] = table[column].map(lambda v: "" if math.isnan(v) else f"{v:+.1f}%")
    note = (f"\n{DELAY_LABEL}: mean time loss + insertion delay over all planned trips, never-inserted ones "
            "included (RESCO's definition); travel_time: completed trips, travel_time_all: all planned trips")
    return shown.to_string(index=False) + note


# --- the matrix ---------------------------------------------------------------------------------


def _route_file_scenarios(route_files: Sequence[PathLike], network_string: str, horizon: int) -> List[tuple]:
    """(name, env-params) per route file, named after the file, on the network of `network_string`."""
    scenarios: List[tuple] = []
    for route in route_files:
        route_path = Path(route).resolve()
        if not route_path.is_file():
            raise EvaluationError(f"--route-files: file {str(route)!r} does not exist")
        name = scenario_name_for_route_file(route_path)
        if name in [s[0] for s in scenarios]:
            raise EvaluationError(f"--route-files: two files give the scenario name {name!r}; rename one")
        scenarios.append((name, f"{network_string} " + shlex.join(
            ["--route-file", str(route_path), "--end-time", str(horizon), "--traffic_control", "fixed"])))
    return scenarios


def _config_scenarios(config: Any, build: Any) -> Tuple[List[tuple], Dict[str, str]]:
    """(name, env-params) per scenario of a scenarios file; a route-file scenario with several
    files gives one row per file, `<scenario>.<file>` (held-out files evaluated one by one, as
    each training episode ran one). Also: row name -> its scenario's name (for `--scenario`)."""
    rows: List[tuple] = []
    owner: Dict[str, str] = {}
    for scenario in config.scenarios:
        files = scenario.get("route_files") or []
        if len(files) < 2:
            rows.append((scenario["name"], build(config, scenario)))
            owner[scenario["name"]] = scenario["name"]
            continue
        for file in files:
            label = f"{scenario['name']}.{scenario_name_for_route_file(file)}"
            rows.append((label, build(config, {**scenario, "route_files": [file]})))
            owner[label] = scenario["name"]
    return rows, owner


def _route_scenarios_file(out_dir: Path) -> Path:
    """A placeholder scenarios file: with --route-files the network YAML is read without one."""
    folder = Path(tempfile.mkdtemp(prefix="evaluation_routes_"))
    path = folder / "scenarios.yaml"
    path.write_text("scenarios:\n  - name: route_files\n")
    return path


def _study_scenarios(sumocfg_files: Sequence[PathLike], end_time: Optional[int]):
    """(scenarios, inputs, horizon) of study configurations, each named after its folder."""
    from src.sumo_integration.sumocfg import read_sumocfg

    scenarios: List[tuple] = []
    horizons = []
    for file in sumocfg_files:
        path = Path(file).resolve()
        try:
            study = read_sumocfg(path)
        except P.ParameterError as err:
            raise EvaluationError(str(err)) from None
        name = _NAME_CHARS.sub("_", path.parent.name).strip("_") or scenario_name_for_route_file(path)
        if name in [s[0] for s in scenarios]:
            name = f"{name}_{len(scenarios)}"
        args = ["--sumocfg", str(path), "--traffic_control", "fixed"]
        if end_time is not None:
            args += ["--end-time", str(end_time)]
        horizons.append(int(end_time) if end_time is not None else int(study.end or P.DEFAULT_END_TIME))
        scenarios.append((name, shlex.join(args)))
    inputs = {"sumocfg_files": [str(Path(f).resolve()) for f in sumocfg_files]}
    return scenarios, inputs, max(horizons)


def evaluate_controllers(
    network_config: Optional[PathLike],
    scenarios_file: Optional[PathLike],
    controllers: Union[str, Sequence[str]],
    model: Optional[str] = None,
    repeats: int = 3,
    end_time: Optional[int] = None,
    out_dir: PathLike = Path("outputs") / "evaluation",
    workers: Optional[int] = os.cpu_count(),
    scenario_names: Optional[Sequence[str]] = None,
    net_file: Optional[PathLike] = None,
    route_files: Optional[Sequence[PathLike]] = None,
    execution_config: Optional[PathLike] = None,
    base_seed: Optional[int] = None,
    tracking_uri: Optional[str] = None,
    sumocfg_files: Optional[Sequence[PathLike]] = None,
    run_options: Sequence[str] = (),
) -> pd.DataFrame:
    """Run scenario x controller x repeat and return the summary table (also saved as CSV).

    Config mode: `network_config` + `scenarios_file` (YAML, loaded and validated as for
    training; `execution_config` optionally supplies `end_time` and `sumo_seed`, `end_time`
    overrides), or `network_config` + `route_files`. Files mode: `net_file` (a SUMO
    network, its own signal programs kept unless `run_options` ask for a strategy) and
    `route_files` (each a scenario named after the file). Study mode: `sumocfg_files`, each
    a scenario run as published (its net, routes, end and SUMO options; named after its
    folder), each on its own network. `run_options` are `src.cli` options added to every
    run (e.g. `--signal-programs opposites --cycle-length 60`). `scenario_names` selects scenarios.
    `model` (a .zip, `runs:/` or `models:/` URI) is needed for `rl`; it is resolved and
    checked against the network before any simulation starts. Repeat k uses SUMO seed
    `base_seed + k` (default base: the config's `sumo_seed`, 0).

    Raises `EvaluationError` for user mistakes, `EvaluationRunError` when a simulation fails
    (the runs finished so far are in `evaluation_runs.csv`).
    """
    from src.cli import parse_simulation_params

    started = time.perf_counter()
    names = parse_controllers(controllers)
    repeats = int(repeats)
    if repeats < 1:
        raise EvaluationError(f"--repeats: invalid value {repeats}; must be >= 1")
    if end_time is not None and int(end_time) < 1:
        raise EvaluationError(f"--end-time: invalid value {end_time}; must be > 0")
    if "rl" in names and not model:
        raise EvaluationError("--controllers: rl needs --model (a .zip path, runs:/<run_id>/<path> or models:/<name>/<version>)")
    if model and "rl" not in names:
        logger.warning("--model %s is not used: rl is not among the controllers", model)
        model = None
    out_dir = Path(out_dir).resolve()
    files_mode = net_file is not None or (route_files is not None and network_config is None)
    extra = shlex.join([str(o) for o in run_options])
    per_scenario_network = False

    # -- scenarios: (name, base env-params string) and the network params string
    config = None
    owners: Dict[str, str] = {}  # row -> its route-file scenario (config mode)
    if sumocfg_files:
        if network_config is not None or scenarios_file is not None or net_file is not None or route_files:
            raise EvaluationError("--sumocfg replaces --network/--scenarios/--net-file/--route-files; give one form")
        scenarios, inputs, horizon = _study_scenarios(sumocfg_files, end_time)
        seed0 = int(base_seed) if base_seed is not None else P.DEFAULT_SUMO_SEED
        network_string = ""
        per_scenario_network = True
    elif network_config is not None and route_files is not None:
        if scenarios_file is not None:
            raise EvaluationError("--route-files replace --scenarios; give one of them")
        config = _load_config(Path(network_config), _route_scenarios_file(out_dir), end_time,
                              Path(execution_config) if execution_config else None)
        horizon = int(config.end_time)
        seed0 = int(base_seed) if base_seed is not None else int(config.sumo_seed)
        from src.rl.experiment_config import network_params_string

        network_string = network_params_string(config)
        scenarios = _route_file_scenarios(route_files, network_string, horizon)
        inputs = {"network_config": str(network_config), "route_files": [str(Path(r).resolve()) for r in route_files]}
    elif files_mode:
        if network_config is not None or scenarios_file is not None:
            raise EvaluationError("--net-file/--route-files replace --network/--scenarios; give one form, not both")
        if net_file is None or not route_files:
            raise EvaluationError("--net-file and --route-files go together: a SUMO network and at least one route file")
        net_path = Path(net_file).resolve()
        if not net_path.is_file():
            raise EvaluationError(f"--net-file: file {str(net_file)!r} does not exist")
        horizon = int(end_time) if end_time is not None else P.DEFAULT_END_TIME
        seed0 = int(base_seed) if base_seed is not None else P.DEFAULT_SUMO_SEED
        network_string = shlex.join(["--net-file", str(net_path)])
        scenarios = _route_file_scenarios(route_files, network_string, horizon)
        inputs = {"net_file": str(net_path), "route_files": [str(Path(r).resolve()) for r in route_files]}
    else:
        if network_config is None or scenarios_file is None:
            raise EvaluationError("give --network and --scenarios (YAML files), or --net-file and --route-files")
        from src.rl.experiment_config import ConfigError, build_env_params_for_scenario, network_params_string

        config = _load_config(Path(network_config), Path(scenarios_file), end_time,
                              Path(execution_config) if execution_config else None)
        horizon = int(config.end_time)
        seed0 = int(base_seed) if base_seed is not None else int(config.sumo_seed)
        try:
            network_string = network_params_string(config)
            scenarios, owners = _config_scenarios(config, build_env_params_for_scenario)
        except ConfigError as err:
            raise EvaluationError(str(err)) from None
        inputs = {"network_config": str(network_config), "scenarios_file": str(scenarios_file),
                  "execution_config": str(execution_config) if execution_config else None}

    wanted = [s.strip() for item in (scenario_names or []) if item for s in str(item).split(",") if s.strip()]
    if wanted:
        # a route-file scenario's name selects all its files' rows
        available = list(dict.fromkeys([s[0] for s in scenarios] + list(owners.values())))
        unknown = [s for s in wanted if s not in available]
        if unknown:
            raise EvaluationError(f"--scenario: unknown scenario {unknown[0]!r}; available: {', '.join(available)}")
        scenarios = [s for s in scenarios if s[0] in wanted or owners.get(s[0]) in wanted]
    scenario_list = [s[0] for s in scenarios]
    if not scenario_list:
        raise EvaluationError("no scenario to evaluate")
    if extra:
        network_string = f"{network_string} {extra}".strip()
        scenarios = [(name, f"{base} {extra}") for name, base in scenarios]

    model_info = _resolve_model(model, tracking_uri) if model else None

    # -- every run's parameters, checked before anything is built or started
    network_dir = out_dir / "network"
    jobs: List[_Job] = []
    for k in range(repeats):
        for name, base in scenarios:
            scenario_network = network_dir / name if per_scenario_network else network_dir
            for controller in names:
                run_dir = out_dir / "runs" / name / controller / f"rep{k}"
                text = _run_params(base, controller, seed0 + k, run_dir,
                                   model_info["local_path"] if model_info else None)
                try:
                    parse_simulation_params(text)
                except P.ParameterError as err:
                    raise EvaluationError(f"scenario {name!r}, controller {controller}: {err}") from None
                jobs.append(_Job(name, controller, k, seed0 + k, text, str(scenario_network), str(run_dir)))

    out_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        from src.rl.experiment_config import save_experiment

        save_experiment(config, out_dir / "resolved_config.yaml")
    logger.info("building the network once in %s", network_dir)
    from src.rl.training import build_shared_network

    try:
        if per_scenario_network:  # each study folder brings its own network
            for name, base in scenarios:
                build_shared_network(base, network_dir / name)
        else:
            build_shared_network(network_string, network_dir)
    except P.ParameterError as err:
        raise EvaluationError(str(err)) from None
    except Exception as err:  # a net file the builder cannot read
        if files_mode:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EvaluationError(f"--net-file {net_file}: cannot build the network: {first}") from None
        raise
    if model_info:
        _check_model_fits(Path(model_info["local_path"]), network_dir, str(model))

    manifest = {
        **inputs,
        "scenarios": scenario_list,
        "controllers": names,
        "repeats": repeats,
        "end_time": horizon,
        "sumo_seeds": [seed0 + k for k in range(repeats)],
        "network_dir": str(network_dir),
        "network_params": network_string,
        "model": model_info,
        "workers": int(workers or 1),
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))

    records: Optional[List[Dict[str, Any]]] = None
    try:
        records, failed = _run_jobs(jobs, int(workers or 1), out_dir / "logs")
    finally:  # also when interrupted: keep every run that finished
        done = records if records is not None else _finished_records(jobs)
        runs_frame(done, scenario_list, names).to_csv(out_dir / RUNS_FILE, index=False)
    if failed is not None:
        raise EvaluationRunError(
            f"run {failed['scenario']}/{failed['controller']}/rep{failed['repeat']} failed: {failed['error']}; "
            f"finished runs are in {out_dir / RUNS_FILE}")

    runs = runs_frame(records, scenario_list, names)
    table = summarize_runs(runs, scenario_list, names)
    table.to_csv(out_dir / TABLE_FILE, index=False)
    manifest["wall_time_s"] = time.perf_counter() - started
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    logger.info("table written to %s", out_dir / TABLE_FILE)
    return table


def read_runs(out_dir: PathLike) -> pd.DataFrame:
    """The per-run records an evaluation wrote in `out_dir`."""
    return pd.read_csv(Path(out_dir) / RUNS_FILE, keep_default_na=False, na_values=[""])


# --- chart and MLflow ---------------------------------------------------------------------------


def plot_travel_times(table: pd.DataFrame, path: PathLike, title: str = "") -> Path:
    """Grouped bars per scenario, one per controller, with the std over repeats as error bars:
    completed trips (left) and all planned trips (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scenarios = list(dict.fromkeys(table["scenario"]))
    controllers = list(dict.fromkeys(table["controller"]))
    width = 0.8 / max(len(controllers), 1)
    x = np.arange(len(scenarios))
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(scenarios) * 2 + 3), 4.2), squeeze=False)
    for ax, metric, label in zip(axes[0], RELATIVE_METRICS, ("completed trips", "all planned trips")):
        for k, controller in enumerate(controllers):
            sub = table[table["controller"] == controller].set_index("scenario")
            means = [sub[f"{metric}_mean"].get(s, np.nan) for s in scenarios]
            stds = [sub[f"{metric}_std"].get(s, np.nan) for s in scenarios]
            stds = [0.0 if (s is None or np.isnan(s)) else s for s in stds]
            ax.bar(x + (k - (len(controllers) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=controller)
        ax.set_xticks(x)
        ax.set_xticklabels(scenarios, rotation=20, ha="right")
        ax.set_ylabel("mean travel time (s)")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(controllers), 6), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _find_source_run(client, model_file: Path) -> Optional[str]:
    """The training run whose model folder holds `model_file` (tag `model_dir`), if any."""
    folder = str(Path(model_file).resolve().parent)
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return None
        runs = client.search_runs(experiments, filter_string=f"tags.model_dir = '{folder}'", max_results=1)
    except Exception:  # noqa: BLE001 - best effort: no link is not an error
        return None
    return runs[0].info.run_id if runs else None


def _metric_key(*parts: str) -> str:
    return "/".join(_NAME_CHARS.sub("_", p) for p in parts)


def log_evaluation_to_mlflow(
    table: pd.DataFrame,
    runs: Optional[pd.DataFrame],
    out_dir: PathLike,
    experiment_name: str,
    tracking_uri: Optional[str] = None,
    tags: Optional[Mapping[str, Any]] = None,
    model: Optional[str] = None,
) -> str:
    """One parent run (table CSV, `evaluation_table.json`, bar chart, per-run CSV, metrics
    `<controller>/<scenario>/<metric>`) with a nested child run per controller (metrics
    `<scenario>/<metric>` and `<scenario>/per_repeat/<travel time>` at step = repeat; the `rl`
    child tagged with the model URI, its resolution and source run). Metric values are means
    over repeats; `<metric>_std` and `*_vs_<baseline>_pct` beside them. `runs` are the
    per-run records (`read_runs(out_dir)` when None). Returns the parent run id. Under
    `mlflow run` the parent is the project's run."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    from src.tracking.run import MetricsBuffer, git_commit, start_run

    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST_FILE).read_text()) if (out_dir / MANIFEST_FILE).is_file() else {}
    if runs is None and (out_dir / RUNS_FILE).is_file():
        runs = read_runs(out_dir)
    elif runs is not None and not (out_dir / RUNS_FILE).is_file():
        runs.to_csv(out_dir / RUNS_FILE, index=False)
    table_csv = out_dir / TABLE_FILE
    if not table_csv.is_file():
        table.to_csv(table_csv, index=False)
    chart = plot_travel_times(table, out_dir / CHART_FILE, title=experiment_name)

    model_info = manifest.get("model")
    if model is not None and (not model_info or model_info.get("uri") != str(model)):
        model_info = _resolve_model(model, tracking_uri)

    parent, uri = start_run(experiment_name, f"evaluation_{time.strftime('%Y%m%d_%H%M%S')}", tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if model_info and not model_info.get("run_id"):
        model_info = dict(model_info, run_id=_find_source_run(client, Path(model_info["local_path"])))

    scenarios = list(dict.fromkeys(table["scenario"])) if not table.empty else []
    controllers = list(dict.fromkeys(table["controller"])) if not table.empty else []
    value_columns = [c for c in table.columns if c not in ("scenario", "controller")]

    def metrics_of(row: pd.Series) -> Dict[str, float]:
        values = {}
        for column in value_columns:
            name = column[: -len("_mean")] if column.endswith("_mean") else column
            values[name] = float(row[column])
        return values

    parent_id = parent.info.run_id
    status = "FAILED"
    try:
        parent_tags = {"evaluation": "true", "git_commit": git_commit(), "scenarios": ",".join(scenarios),
                       "controllers": ",".join(controllers), "output_dir": str(out_dir.resolve())}
        if model_info:
            parent_tags.update({"model_uri": model_info["uri"], "model_resolved_uri": model_info["resolved_uri"],
                                "model_source_run_id": model_info.get("run_id")})
        parent_tags.update(dict(tags or {}))
        existing = client.get_run(parent_id).data.params
        params = {"controllers": ",".join(controllers), "scenarios": ",".join(scenarios),
                  "repeats": manifest.get("repeats", int(table["repeats"].max()) if not table.empty else 0),
                  "end_time": manifest.get("end_time"), "sumo_seeds": manifest.get("sumo_seeds"),
                  "model": model_info["uri"] if model_info else None}
        for key in ("network_config", "scenarios_file", "execution_config", "net_file", "route_files"):
            if manifest.get(key):
                params[key] = manifest[key]
        client.log_batch(
            parent_id,
            params=[Param(k, str(v)[:6000]) for k, v in params.items() if v is not None and k not in existing],
            tags=[RunTag(k, str(v)[:5000]) for k, v in parent_tags.items() if v is not None],
        )
        client.log_artifact(parent_id, str(table_csv))
        client.log_artifact(parent_id, str(chart))
        for extra in (RUNS_FILE, MANIFEST_FILE, "resolved_config.yaml"):
            if (out_dir / extra).is_file():
                client.log_artifact(parent_id, str(out_dir / extra))
        mlflow.log_table(table, "evaluation_table.json", run_id=parent_id)
        buffer = MetricsBuffer(client, parent_id, flush_s=math.inf)
        for _, row in table.iterrows():
            buffer.add(0, {_metric_key(row["controller"], row["scenario"], k): v for k, v in metrics_of(row).items()})
        buffer.flush()

        for controller in controllers:
            with mlflow.start_run(run_name=controller, nested=True) as child:
                child_id = child.info.run_id
                child_params = {"controller": controller, "scenarios": ",".join(scenarios),
                                "repeats": params["repeats"], "end_time": params["end_time"]}
                child_tags = {"evaluation": "true", "controller": controller}
                if controller == "rl" and model_info:
                    child_params["model"] = model_info["uri"]
                    child_tags.update({
                        "model_uri": model_info["uri"],
                        "model_resolved_uri": model_info["resolved_uri"],
                        "model_source_run_id": model_info.get("run_id"),
                        "model_registered_name": model_info.get("registered_name"),
                        "model_version": model_info.get("version"),
                        "model_local_path": model_info.get("local_path"),
                    })
                client.log_batch(child_id, params=[Param(k, str(v)) for k, v in child_params.items() if v is not None],
                                 tags=[RunTag(k, str(v)) for k, v in child_tags.items() if v is not None])
                child_buffer = MetricsBuffer(client, child_id, flush_s=math.inf)
                for _, row in table[table["controller"] == controller].iterrows():
                    child_buffer.add(0, {_metric_key(row["scenario"], k): v for k, v in metrics_of(row).items()})
                if runs is not None and not runs.empty:  # each repeat's value, step = repeat index
                    for _, run in runs[runs["controller"] == controller].iterrows():
                        child_buffer.add(int(run["repeat"]), {_metric_key(run["scenario"], "per_repeat", m): run[m]
                                                              for m in RELATIVE_METRICS})
                child_buffer.flush()
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)
    logger.debug("MLflow run %s (%s)", parent_id, uri)
    return parent_id


__all__ = [
    "EvaluationError",
    "EvaluationRunError",
    "evaluate_controllers",
    "format_table",
    "log_evaluation_to_mlflow",
    "parse_controllers",
    "plot_travel_times",
    "read_runs",
    "scenario_name_for_route_file",
    "summarize_runs",
]
