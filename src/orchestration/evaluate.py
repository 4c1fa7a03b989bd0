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
                             `log_evaluation` (src/orchestration/report.py)
    logs/worker_<pid>.log    each worker's stderr (SUMO warnings are also in each run's sumo.log)
    resolved_config.yaml     the loaded configuration (config mode)

The parts: `inputs` (the scenarios and the model, checked first), `pool` (the worker
processes and the progress), `table` (the summary), `plots` (the chart), `report` (logging
through the tracking seam). Workers start through 'forkserver' (or 'spawn'), which imports
the caller's main module: a script calling `evaluate_controllers` needs the usual
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import pandas as pd

from src import params as P
from src.argv import parse_simulation_params
from src.orchestration.inputs import (
    EvaluationError,
    Scenarios,
    check_model_fits,
    parse_controllers,
    read_scenarios,
    resolve_model,
    run_params,
)
from src.orchestration.pool import Job, finished_records, run_jobs
from src.orchestration.table import RUNS_FILE, TABLE_FILE, runs_frame, summarize_runs
from src.rl.config import save_experiment
from src.rl.training import build_shared_network

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

MANIFEST_FILE = "evaluation.json"


class EvaluationRunError(RuntimeError):
    """A simulation of the matrix failed; the message names the run and where its log is."""


def _plan_jobs(scenarios: Scenarios, controllers: Sequence[str], repeats: int, out_dir: Path,
               model_path: Optional[str]) -> List[Job]:
    """Every run of the matrix, its parameters checked before anything is built or started."""
    network_dir = out_dir / "network"
    jobs: List[Job] = []
    for k in range(repeats):
        seed = scenarios.seed0 + k
        for name, base in scenarios.runs:
            scenario_network = network_dir / name if scenarios.per_scenario_network else network_dir
            for controller in controllers:
                run_dir = out_dir / "runs" / name / controller / f"rep{k}"
                text = run_params(base, controller, seed, run_dir, model_path)
                try:
                    parse_simulation_params(text)
                except P.ParameterError as err:
                    raise EvaluationError(f"scenario {name!r}, controller {controller}: {err}") from None
                jobs.append(Job(name, controller, k, seed, text, str(scenario_network), str(run_dir)))
    return jobs


def _build_networks(scenarios: Scenarios, network_dir: Path) -> None:
    """The shared network once (study mode: each scenario's own); a net file the builder
    cannot read is an EvaluationError in files mode."""
    try:
        if scenarios.per_scenario_network:  # each study folder brings its own network
            for name, base in scenarios.runs:
                build_shared_network(base, network_dir / name)
        else:
            build_shared_network(scenarios.network_params, network_dir)
    except P.ParameterError as err:
        raise EvaluationError(str(err)) from None
    except Exception as err:  # a net file the builder cannot read
        if scenarios.net_file is not None:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EvaluationError(f"--net-file {scenarios.net_file}: cannot build the network: {first}") from None
        raise


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
    progress_bar: Optional[bool] = None,
    begin: Optional[int] = None,
) -> pd.DataFrame:
    """Run scenario x controller x repeat and return the summary table (also saved as CSV).

    Config mode: `network_config` + `scenarios_file` (YAML, loaded and validated as for
    training; `execution_config` optionally supplies `begin`, `end_time` and `sumo_seed`;
    `begin`/`end_time` override), or `network_config` + `route_files`. Files mode: `net_file` (a SUMO
    network, its own signal programs kept unless `run_options` ask for a strategy) and
    `route_files` (each a scenario named after the file). Study mode: `sumocfg_files`, each
    a scenario run as published (its net, routes, end and SUMO options; named after its
    folder), each on its own network. `run_options` are `src.cli` options added to every
    run (e.g. `--signal-programs opposites --cycle-length 60`). `scenario_names` selects scenarios.
    `model` (a .zip, `runs:/` or `models:/` URI) is needed for `rl`; it is resolved and
    checked against the network before any simulation starts. Repeat k uses SUMO seed
    `base_seed + k` (default base: the config's `sumo_seed`, 0). `progress_bar`: a bar over
    the runs (default: when stderr is a terminal), else one progress line per run.

    Raises `EvaluationError` for user mistakes, `EvaluationRunError` when a simulation fails
    (the runs finished so far are in `evaluation_runs.csv`).
    """
    started = time.perf_counter()
    names = parse_controllers(controllers)
    repeats = int(repeats)
    if repeats < 1:
        raise EvaluationError(f"--repeats: invalid value {repeats}; must be >= 1")
    if end_time is not None and int(end_time) < 1:
        raise EvaluationError(f"--end-time: invalid value {end_time}; must be > 0")
    if begin is not None and not 0 <= int(begin) < (int(end_time) if end_time is not None else float("inf")):
        raise EvaluationError(f"--begin: invalid value {begin}; must be >= 0 and before --end-time")
    if "rl" in names and not model:
        raise EvaluationError("--controllers: rl needs --model (a .zip path, runs:/<run_id>/<path> or models:/<name>/<version>)")
    if model and "rl" not in names:
        logger.warning("--model %s is not used: rl is not among the controllers", model)
        model = None
    out_dir = Path(out_dir).resolve()
    scenarios = read_scenarios(network_config, scenarios_file, net_file, route_files, sumocfg_files, execution_config,
                               end_time, base_seed, scenario_names, run_options, begin)
    model_info = resolve_model(model, tracking_uri) if model else None
    jobs = _plan_jobs(scenarios, names, repeats, out_dir, model_info["local_path"] if model_info else None)

    out_dir.mkdir(parents=True, exist_ok=True)
    if scenarios.config is not None:
        save_experiment(scenarios.config, out_dir / "resolved_config.yaml")
    network_dir = out_dir / "network"
    logger.info("building the network once in %s", network_dir)
    _build_networks(scenarios, network_dir)
    if model_info:  # on every network it will run on (study mode: each study's own)
        for name in (scenarios.names if scenarios.per_scenario_network else [None]):
            check_model_fits(Path(model_info["local_path"]), network_dir / name if name else network_dir, str(model))

    manifest: Dict[str, Any] = {
        **scenarios.inputs,
        "scenarios": scenarios.names,
        "controllers": names,
        "repeats": repeats,
        "end_time": scenarios.horizon,
        "sumo_seeds": [scenarios.seed0 + k for k in range(repeats)],
        "network_dir": str(network_dir),
        "network_params": scenarios.network_params,
        "model": model_info,
        "workers": int(workers or 1),
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))

    records = None
    try:
        records, failed = run_jobs(jobs, int(workers or 1), out_dir / "logs", bar=progress_bar)
    finally:  # also when interrupted: keep every run that finished
        done = records if records is not None else finished_records(jobs)
        runs_frame(done, scenarios.names, names).to_csv(out_dir / RUNS_FILE, index=False)
    if failed is not None:
        raise EvaluationRunError(
            f"run {failed['scenario']}/{failed['controller']}/rep{failed['repeat']} failed: {failed['error']}; "
            f"finished runs are in {out_dir / RUNS_FILE}")

    table = summarize_runs(runs_frame(records, scenarios.names, names), scenarios.names, names)
    table.to_csv(out_dir / TABLE_FILE, index=False)
    manifest["wall_time_s"] = time.perf_counter() - started
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    logger.info("table written to %s", out_dir / TABLE_FILE)
    return table


__all__ = ["EvaluationError", "EvaluationRunError", "MANIFEST_FILE", "evaluate_controllers"]
