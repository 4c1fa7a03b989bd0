"""`python -m src.cli ...`: build a network and traffic, run one simulation, report trip metrics.

`create_argument_parser()` is the single parser of simulation parameters. RL training
builds its per-scenario env-params strings for this same parser, so any training scenario
can be replayed alone with `python -m src.cli <env-params>`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from src import params as P
from src.control.registry import controller_names


def _opt(name: str) -> List[str]:
    """Accept both spellings of an option: --block_size_m and --block-size-m."""
    underscore = name.replace("-", "_")
    dashed = name.replace("_", "-")
    return sorted({f"--{underscore}", f"--{dashed}"}, key=lambda s: s != f"--{name}")


def _number(option: str, kind=int, minimum: float = 0, strict: bool = True):
    """Parse a number of `kind` that must be > minimum (or >= with strict=False)."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: invalid value {text!r}; expected {noun} {bound}") from None
        if (value <= minimum) if strict else (value < minimum):
            raise argparse.ArgumentTypeError(f"{option}: invalid value {text!r}; must be {bound}")
        return value

    return parse


def _positive_int(option: str):
    return _number(option, int)


def _positive_float(option: str):
    return _number(option, float)


def _non_negative_int(option: str):
    return _number(option, int, strict=False)


def _choice(option: str, allowed: Sequence[str]):
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{option}: invalid value {text!r}; allowed: {', '.join(allowed)}")
        return text

    return parse


def _wrap(option: str, func):
    def parse(text: str):
        try:
            return func(text)
        except P.ParameterError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


class _OneLineParser(argparse.ArgumentParser):
    """Bad input ends with one line naming the option and what is allowed, exit code 2."""

    def error(self, message: str) -> None:  # noqa: D102
        # argparse prefixes "argument --x/--y: "; our messages already name the option.
        if ": --" in message and message.startswith("argument "):
            message = message.split(": ", 1)[1]
        self.exit(2, f"{self.prog}: error: {message}\n")


def create_argument_parser() -> argparse.ArgumentParser:
    """The parser of every simulation parameter (network, traffic, control, run)."""
    parser = _OneLineParser(
        prog="python -m src.cli",
        description="Build a grid network and scenario traffic, run SUMO with a signal controller, report trip metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument(*_opt("network-seed"), dest="network_seed", type=_non_negative_int("--network-seed"), default=P.DEFAULT_NETWORK_SEED)
    net.add_argument(*_opt("grid_dimension"), dest="grid_dimension", type=_positive_int("--grid_dimension"), default=P.DEFAULT_GRID_DIMENSION,
                     help="junctions per side of the square grid")
    net.add_argument(*_opt("junctions_to_remove"), dest="junctions_to_remove", type=_wrap("--junctions_to_remove", P.parse_junctions_to_remove),
                     default=P.DEFAULT_JUNCTIONS_TO_REMOVE, help="a count (random, from the network seed) or a comma list of IDs like B1,C2")
    net.add_argument(*_opt("block_size_m"), dest="block_size_m", type=_positive_float("--block_size_m"), default=P.DEFAULT_BLOCK_SIZE_M)
    net.add_argument(*_opt("lane_count"), dest="lane_count", type=_wrap("--lane_count", P.parse_lane_count), default=P.DEFAULT_LANE_COUNT,
                     help="realistic (from land-use demand), random (1-3) or an integer")
    net.add_argument(*_opt("step-length"), dest="step_length", type=_positive_float("--step-length"), default=P.DEFAULT_STEP_LENGTH)
    net.add_argument(*_opt("land_use_block_size_m"), dest="land_use_block_size_m", type=_positive_float("--land_use_block_size_m"),
                     default=P.DEFAULT_LAND_USE_BLOCK_SIZE_M)
    net.add_argument(*_opt("attractiveness"), dest="attractiveness", type=_choice("--attractiveness", P.ATTRACTIVENESS_METHODS),
                     default=None, help=f"default: {P.DEFAULT_ATTRACTIVENESS} on a grid, uniform on --net-file (no land use)")
    net.add_argument(*_opt("signal-programs"), *_opt("traffic_light_strategy"), dest="signal_programs",
                     type=_choice("--signal-programs", P.SIGNAL_PROGRAMS), default=None,
                     help=f"{P.KEEP_PROGRAMS}: the net file's own programs (default with --net-file); or generated "
                          f"programs of a strategy (default on a grid: {P.DEFAULT_TRAFFIC_LIGHT_STRATEGY})")
    net.add_argument(*_opt("net-file"), dest="net_file", type=Path, default=None, help="a SUMO .net.xml replacing the synthetic grid")
    net.add_argument("--sumocfg", dest="sumocfg", type=Path, default=None,
                     help="a study's SUMO configuration: its net, route file, end time and run options (e.g. rerouting)")

    traffic = parser.add_argument_group("traffic")
    traffic.add_argument(*_opt("num_vehicles"), dest="num_vehicles", type=_positive_int("--num_vehicles"), default=P.DEFAULT_NUM_VEHICLES)
    traffic.add_argument(*_opt("private-traffic-seed"), dest="private_traffic_seed", type=_non_negative_int("--private-traffic-seed"),
                         default=P.DEFAULT_PRIVATE_TRAFFIC_SEED)
    traffic.add_argument(*_opt("public-traffic-seed"), dest="public_traffic_seed", type=_non_negative_int("--public-traffic-seed"),
                         default=P.DEFAULT_PUBLIC_TRAFFIC_SEED)
    traffic.add_argument(*_opt("routing_strategy"), dest="routing_strategy",
                         type=_wrap("--routing_strategy", lambda t: P.parse_percentage_mix(t, "--routing_strategy", P.ROUTING_STRATEGIES)),
                         default=P.DEFAULT_ROUTING_STRATEGY, help='e.g. "shortest 70 realtime 30"')
    traffic.add_argument(*_opt("vehicle_types"), dest="vehicle_types",
                         type=_wrap("--vehicle_types", lambda t: P.parse_percentage_mix(t, "--vehicle_types", P.VEHICLE_TYPES)),
                         default=P.DEFAULT_VEHICLE_TYPES, help='e.g. "passenger 90 public 10"')
    traffic.add_argument(*_opt("passenger-routes"), dest="passenger_routes",
                         type=_wrap("--passenger-routes", lambda t: P.parse_percentage_mix(t, "--passenger-routes", P.PASSENGER_ROUTE_KINDS)),
                         default=P.DEFAULT_PASSENGER_ROUTES, help='e.g. "in 10 out 10 inner 70 pass 10"')
    traffic.add_argument(*_opt("departure_pattern"), dest="departure_pattern", default=P.DEFAULT_DEPARTURE_PATTERN,
                         help="uniform, six_periods or custom:HH:MM-HH:MM,PCT;...")
    traffic.add_argument(*_opt("start_time_hour"), dest="start_time_hour", type=float, default=P.DEFAULT_START_TIME_HOUR,
                         help="clock hour at simulation time 0 (selects the time-of-day period)")
    traffic.add_argument(*_opt("end-time"), dest="end_time", type=_positive_int("--end-time"), default=None,
                         help=f"simulated seconds (default: the --sumocfg end, else {P.DEFAULT_END_TIME})")
    traffic.add_argument(*_opt("route-file"), dest="route_file", type=Path, default=None, help="a SUMO route/trip file replacing generated traffic")

    control = parser.add_argument_group("control")
    control.add_argument(*_opt("traffic_control"), dest="traffic_control", type=_choice("--traffic_control", controller_names()),
                         default=P.DEFAULT_TRAFFIC_CONTROL)
    control.add_argument(*_opt("cycle-length"), dest="cycle_length", type=_positive_int("--cycle-length"), default=None,
                         help=f"default: the kept programs' own cycle, else {P.DEFAULT_CYCLE_LENGTH}; "
                              "fixed with a cycle length on kept programs splits their green equally (Uniform)")
    control.add_argument(*_opt("min-green"), dest="min_green", type=_positive_int("--min-green"), default=P.DEFAULT_MIN_GREEN)
    control.add_argument(*_opt("yellow-time"), dest="yellow_time", type=_non_negative_int("--yellow-time"), default=P.DEFAULT_YELLOW_TIME,
                         help="yellow of generated programs (>= 1); kept programs use their own transitions")
    control.add_argument(*_opt("decision-interval"), dest="decision_interval", type=_positive_int("--decision-interval"),
                         default=P.DEFAULT_DECISION_INTERVAL, help="max_pressure: seconds between phase choices after the minimum green")
    control.add_argument(*_opt("model-path"), dest="model_path", default=None,
                         help="trained policy for --traffic_control rl: a .zip path, runs:/ or models:/ URI")
    control.add_argument(*_opt("tree-method-speed-factor"), dest="tree_method_speed_factor", type=_positive_float("--tree-method-speed-factor"),
                         default=P.DEFAULT_TREE_METHOD_SPEED_FACTOR,
                         help="Tree Method: a link is loaded below this factor x its speed of maximum flow")

    run = parser.add_argument_group("run")
    run.add_argument(*_opt("sumo-seed"), dest="sumo_seed", type=_non_negative_int("--sumo-seed"), default=P.DEFAULT_SUMO_SEED)
    run.add_argument(*_opt("output-dir"), dest="output_dir", type=Path, default=None,
                     help="where network, routes, trip records and metrics go (default outputs/<timestamp>)")
    run.add_argument("--gui", action="store_true", help="run sumo-gui (through TraCI)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _apply_sumocfg(ns: argparse.Namespace):
    """Fill net file, route file, end time and step length from `--sumocfg`; return its run options."""
    from src.sumo_integration.sumocfg import read_sumocfg

    if ns.net_file is not None or ns.route_file is not None:
        raise P.ParameterError("--sumocfg: names the net and route files itself; leave out --net-file and --route-file")
    study = read_sumocfg(ns.sumocfg)
    if study.begin != 0:
        raise P.ParameterError(f"--sumocfg: begin {study.begin:g} is not supported; runs start at 0")
    if len(study.route_files) != 1:
        raise P.ParameterError(f"--sumocfg: {len(study.route_files)} route files; exactly one is supported")
    ns.net_file, ns.route_file = study.net_file, study.route_files[0]
    if ns.end_time is None and study.end is not None:
        ns.end_time = int(study.end)
    if study.step_length is not None:
        ns.step_length = study.step_length
    return study


def params_from_args(ns: argparse.Namespace) -> P.SimulationParams:
    """Turn parsed arguments into validated parameters; raises ParameterError on bad combinations."""
    study = _apply_sumocfg(ns) if getattr(ns, "sumocfg", None) is not None else None
    if ns.end_time is None:
        ns.end_time = P.DEFAULT_END_TIME
    if ns.net_file is not None and not Path(ns.net_file).is_file():
        raise P.ParameterError(f"--net-file: file {str(ns.net_file)!r} does not exist")
    if ns.route_file is not None and not Path(ns.route_file).is_file():
        raise P.ParameterError(f"--route-file: file {str(ns.route_file)!r} does not exist")
    if not 0 <= ns.start_time_hour < 24:
        raise P.ParameterError(f"--start_time_hour: invalid value {ns.start_time_hour!r}; allowed: 0 <= hour < 24")
    departure = P.parse_departure_pattern(ns.departure_pattern, ns.end_time)
    if ns.traffic_control == "rl" and not ns.model_path:
        raise P.ParameterError("--traffic_control: rl needs --model-path (a .zip, runs:/ or models:/ URI)")
    if ns.model_path and not str(ns.model_path).startswith(("runs:/", "models:/")) \
            and not Path(ns.model_path).exists() and not Path(f"{ns.model_path}.zip").exists():
        raise P.ParameterError(f"--model-path: file {ns.model_path!r} does not exist")
    network = P.NetworkParams(
        network_seed=ns.network_seed,
        grid_dimension=ns.grid_dimension,
        junctions_to_remove=ns.junctions_to_remove,
        block_size_m=ns.block_size_m,
        lane_count=ns.lane_count,
        step_length=ns.step_length,
        land_use_block_size_m=ns.land_use_block_size_m,
        attractiveness=ns.attractiveness,
        signal_programs=ns.signal_programs,
        net_file=ns.net_file,
    )
    traffic = P.TrafficParams(
        num_vehicles=ns.num_vehicles,
        private_traffic_seed=ns.private_traffic_seed,
        public_traffic_seed=ns.public_traffic_seed,
        routing_strategy=ns.routing_strategy,
        vehicle_types=ns.vehicle_types,
        passenger_routes=ns.passenger_routes,
        departure_pattern=departure,
        start_time_hour=ns.start_time_hour,
        end_time=ns.end_time,
        route_file=ns.route_file,
    )
    control = P.ControlParams(
        traffic_control=ns.traffic_control,
        cycle_length=ns.cycle_length,
        min_green=ns.min_green,
        yellow_time=ns.yellow_time,
        model_path=ns.model_path,
        tree_method_speed_factor=ns.tree_method_speed_factor,
        decision_interval=ns.decision_interval,
    )
    # The builders' own checks, run here so every bad value is reported before SUMO starts.
    from src.network import validate_network_params
    from src.traffic import validate_traffic_params

    validate_network_params(network, yellow_time=ns.yellow_time, min_green=ns.min_green,
                            cycle_length=control.cycle_length_or_default)
    validate_traffic_params(traffic)
    return P.SimulationParams(network, traffic, control, sumo_seed=ns.sumo_seed, output_dir=ns.output_dir, gui=ns.gui,
                              sumo_options=study.options if study else (),
                              additional_files=study.additional_files if study else ())


def parse_simulation_params(argv: Sequence[str] | str) -> P.SimulationParams:
    """Parse an argument list or an env-params string; raises ParameterError (never exits)."""
    tokens = shlex.split(argv) if isinstance(argv, str) else list(argv)
    parser = create_argument_parser()

    def raise_error(message: str) -> None:
        if message.startswith("argument ") and ": " in message:
            message = message.split(": ", 1)[1]
        raise P.ParameterError(message)

    parser.error = raise_error  # type: ignore[method-assign]
    return params_from_args(parser.parse_args(tokens))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = create_argument_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if ns.quiet else logging.INFO, format="%(message)s")
    try:
        params = params_from_args(ns)
    except P.ParameterError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    from src.orchestration.simulation import SimulationError, run_simulation

    try:
        result = run_simulation(params, progress=not ns.quiet)
    except (P.ParameterError, SimulationError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(result.format_table())
    print(f"metrics written to {result.metrics_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
