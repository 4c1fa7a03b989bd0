#!/usr/bin/env python
r"""Compare controllers (fixed, actuated, max_pressure, tree_method, a trained rl policy) on scenarios.

    python rl/evaluate.py --network rl/configs/network/grid6_realistic.yaml \
        --scenarios rl/configs/scenarios/heavy_load.yaml \
        --controllers fixed,actuated,max_pressure,tree_method,rl --model models:/grid6_realistic/latest \
        --repeats 3 --end-time 7200

    python rl/evaluate.py --net-file city.net.xml --route-files morning.rou.xml,evening.rou.xml \
        --controllers fixed,actuated,max_pressure --repeats 2 --end-time 3600

    python rl/evaluate.py --sumocfg study/run2/simulation.sumocfg.xml,study/run3/simulation.sumocfg.xml \
        --controllers fixed,actuated,tree_method --repeats 3

A network YAML naming `net_file` also takes `--route-files` instead of `--scenarios`; a
given net file keeps its own signal programs unless `--signal-programs` names a strategy.

Every scenario x controller runs `--repeats` times (SUMO seed base+k for repeat k) in parallel
worker processes. The table (mean ± std over repeats, change of the mean travel time against
fixed and actuated) is printed and saved as CSV; with MLflow (default) it is logged as one
parent run with a child run per controller.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from mlflow.exceptions import MlflowException  # noqa: E402  (after the path set-up above)

from src.locations import LocationError, check_writable_dir  # noqa: E402
from src.orchestration.evaluate import EvaluationRunError, evaluate_controllers  # noqa: E402
from src.orchestration.inputs import EvaluationError  # noqa: E402
from src.orchestration.plots import CHART_FILE  # noqa: E402
from src.orchestration.report import log_evaluation, mlflow_tracker  # noqa: E402
from src.orchestration.table import RUNS_FILE, TABLE_FILE, format_table  # noqa: E402
from src.rl.train_args import optional  # noqa: E402
from src.tracking.tracker import NullTracker  # noqa: E402

DEFAULT_CONTROLLERS = "fixed,actuated,max_pressure,tree_method"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected an integer > 0") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; must be > 0")
    return value


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="rl/evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to evaluate (YAML configs, or SUMO files)")
    what.add_argument("--network", type=optional(str), help="network config YAML (rl/configs/network/*.yaml)")
    what.add_argument("--scenarios", type=optional(str), help="scenarios config YAML (rl/configs/scenarios/*.yaml)")
    what.add_argument("--execution", type=optional(str), default=None,
                      help="execution config YAML for begin, end_time and sumo_seed (default: engine defaults)")
    what.add_argument("--scenario", action="append", default=None, metavar="NAME", type=optional(str),
                      help="evaluate only this scenario (repeatable, or a comma list)")
    what.add_argument("--net-file", "--net_file", dest="net_file", type=optional(str), help="a SUMO .net.xml instead of --network")
    what.add_argument("--route-files", "--route_files", dest="route_files", type=optional(str),
                      help="comma list of SUMO route files instead of --scenarios; each is a scenario named after its file")
    what.add_argument("--sumocfg", type=optional(str), default=None,
                      help="comma list of study .sumocfg files, each a scenario run as published (net, routes, options)")
    how = parser.add_argument_group("how")
    how.add_argument("--controllers", default=DEFAULT_CONTROLLERS, type=optional(str),
                     help=f"comma list of fixed, actuated, max_pressure, tree_method, rl (default {DEFAULT_CONTROLLERS})")
    how.add_argument("--model", type=optional(str), default=None,
                     help="policy for rl: a .zip path, runs:/<run_id>/<path>, models:/<name>/<version|latest> or models:/<name>@<alias>")
    how.add_argument("--repeats", type=optional(_positive), default=3, help="runs per scenario and controller (SUMO seeds differ)")
    how.add_argument("--begin", type=optional(int), default=None,
                     help="simulation time the runs begin at (default: the execution file's or study's begin, else 0)")
    how.add_argument("--end-time", "--end_time", dest="end_time", type=optional(_positive), default=None,
                     help="simulation time the runs end at (default: the execution file's or study's end, else "
                          "begin + 3600)")
    how.add_argument("--signal-programs", "--signal_programs", dest="signal_programs", type=optional(str), default=None,
                     help="keep (a net file's own programs, its default) or a generated strategy: opposites, incoming, partial_opposites")
    how.add_argument("--cycle-length", "--cycle_length", dest="cycle_length", type=optional(_positive), default=None,
                     help="cycle of the controllers (default: the kept programs' own); fixed then splits green equally")
    how.add_argument("--min-green", "--min_green", dest="min_green", type=optional(_positive), default=None, help="minimum green (s)")
    how.add_argument("--decision-interval", "--decision_interval", dest="decision_interval", type=optional(_positive),
                     default=None, help="seconds between max_pressure's phase choices (default 5)")
    how.add_argument("--seed", type=optional(int), default=None, help="SUMO seed of the first repeat (default: config sumo_seed, 0)")
    how.add_argument("--workers", type=optional(_positive), default=None, help=f"worker processes (default: CPU count, {os.cpu_count()})")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", "--output_dir", dest="output_dir", type=optional(str), default=None,
                     help="where runs, CSV and chart go (default outputs/evaluation_<name>_<time>)")
    out.add_argument("--experiment-name", "--experiment_name", dest="experiment_name", type=optional(str), default=None,
                     help="MLflow experiment (default evaluation_<network name>)")
    out.add_argument("--tracking-uri", "--tracking_uri", dest="tracking_uri", type=optional(str), default=None,
                     help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    out.add_argument("--no-mlflow", dest="no_mlflow", action="store_true", help="do not log to MLflow")
    out.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def _config_path(value: Optional[str]) -> Optional[Path]:
    """A config path as given, or relative to the repository when it is not found from here."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


def _split(text: Optional[str]) -> List[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("mlflow", "alembic", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    study_mode = args.sumocfg is not None
    files_mode = not study_mode and (args.net_file is not None or (args.route_files is not None and not args.network))
    if study_mode:
        name = Path(_split(args.sumocfg)[0]).resolve().parent.parent.name or "study"
    elif files_mode and args.net_file:
        name = Path(args.net_file).name.split(".")[0]
    else:
        name = Path(args.network or "network").stem
    run_options: List[str] = []
    for option, value in (("--signal-programs", args.signal_programs), ("--cycle-length", args.cycle_length),
                          ("--min-green", args.min_green), ("--decision-interval", args.decision_interval)):
        if value is not None:
            run_options += [option, str(value)]
    out_dir = Path(args.output_dir or Path("outputs") / f"evaluation_{name}_{datetime.now().strftime('%Y%m%d_%H%M%S')}")
    try:
        if study_mode:
            if args.network or args.scenarios or args.net_file or args.route_files:
                raise EvaluationError("--sumocfg replaces --network/--scenarios/--net-file/--route-files; give one form")
        elif files_mode:
            if args.network or args.scenarios:
                raise EvaluationError("--net-file/--route-files replace --network/--scenarios; give one form, not both")
            if not args.net_file or not args.route_files:
                raise EvaluationError("--net-file and --route-files go together: a SUMO network and route files")
        elif not args.network or not (args.scenarios or args.route_files):
            raise EvaluationError("give --network and --scenarios (YAML files) or --route-files, --net-file and "
                                  "--route-files, or --sumocfg")
        try:
            check_writable_dir(out_dir, "the output folder (--output-dir)", create=False)
        except LocationError as err:
            raise EvaluationError(str(err)) from None
        table = evaluate_controllers(
            None if files_mode or study_mode else _config_path(args.network),
            None if files_mode or study_mode else _config_path(args.scenarios),
            args.controllers or DEFAULT_CONTROLLERS,
            model=args.model,
            repeats=args.repeats or 3,
            end_time=args.end_time,
            out_dir=out_dir,
            workers=args.workers or os.cpu_count() or 1,
            scenario_names=args.scenario,
            net_file=args.net_file if files_mode else None,
            route_files=_split(args.route_files) if args.route_files and not study_mode else None,
            execution_config=_config_path(args.execution),
            base_seed=args.seed,
            tracking_uri=args.tracking_uri,
            sumocfg_files=_split(args.sumocfg) if study_mode else None,
            run_options=run_options,
            begin=args.begin,
        )
    except EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except EvaluationRunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; finished runs are in {out_dir}", file=sys.stderr)
        return 130

    print()
    print(format_table(table))
    print(f"\ntable: {out_dir.resolve() / TABLE_FILE}  (per run: {out_dir.resolve() / RUNS_FILE})")
    if args.no_mlflow:
        log_evaluation(NullTracker(), table, None, out_dir, title=name)
        print(f"chart: {(out_dir / CHART_FILE).resolve()}")
        return 0
    try:
        experiment = args.experiment_name or f"evaluation_{name}"
        tracker = mlflow_tracker(experiment, args.tracking_uri)
        run_id = log_evaluation(tracker, table, None, out_dir, title=experiment, tags={"network": name})
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: logging to MLflow failed: {first}; the results are saved in {out_dir}", file=sys.stderr)
        return 1
    # the experiment the run landed in: `mlflow run` may pick its own
    print(f"MLflow run {run_id} (experiment {tracker.experiment_name!r}, one child run per controller); open the UI "
          f"with: mlflow ui --backend-store-uri {tracker.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
