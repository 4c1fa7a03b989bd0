"""SimulationParams <-> command-line arguments, both built from `src.params.FIELDS`.

`create_argument_parser()` is the parser of `python -m src.cli`; `to_argv()` writes typed
params back as arguments it parses to the same params (the replay strings of RL training:
paste one after `python -m src.cli` and the same scenario runs). Every option is accepted
in both spellings (`--block_size_m` / `--block-size-m`). A token only becomes a typed value
here (`int("3")`); its bounds are checked once, when the params are made.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Union

from src import params as P
from src.controllers import controller_names
from src.network import validate_network_params
from src.sumo_integration.sumocfg import StudyConfig, read_sumocfg

PROG = "python -m src.cli"
#: What a number option says of a token that is not a number (its bounds come with the params).
_KIND_WORD = {int: "an integer", float: "a number"}


def _spellings(option: str) -> List[str]:
    """`--block_size_m` and `--block-size-m`, the given one first."""
    name = option[2:]
    return sorted({f"--{name.replace('-', '_')}", f"--{name.replace('_', '-')}"}, key=lambda s: s != option)


def _token_parser(spec: P.Field):
    """Command-line token -> the typed value the field's check takes (what YAML would give)."""

    def parse(token: str) -> Any:
        if spec.kind in (int, float):
            try:
                return spec.kind(token)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{spec.option}: invalid value {token!r}; expected {_KIND_WORD[spec.kind]}") from None
        if spec.name == "traffic_control" and token not in controller_names():
            raise argparse.ArgumentTypeError(
                f"{spec.option}: invalid value {token!r}; allowed: {', '.join(controller_names())}")
        return Path(token) if spec.kind is Path else token

    return parse


def _default_token(spec: P.Field) -> Any:
    """The parser's default: the field's default in its command-line form (shown by --help)."""
    if spec.default is None or spec.kind in (int, float, bool):
        return spec.default
    return to_token(spec.default)


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
        prog=PROG,
        description="Build a grid network and scenario traffic, run SUMO with a signal controller, report trip metrics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    groups = {name: parser.add_argument_group(name) for name in P.GROUPS}
    for spec in P.FIELDS.values():
        options = [o for option in (spec.option, *spec.aliases) for o in _spellings(option)]
        if spec.kind is bool:
            groups[spec.group].add_argument(*options, dest=spec.name, action="store_true", help=spec.help)
            continue
        # --sumocfg may set the time span
        default = None if spec.name in ("begin", "end_time") else _default_token(spec)
        groups[spec.group].add_argument(*options, dest=spec.name, type=_token_parser(spec), default=default,
                                        help=spec.help or None)
        if spec.name == "net_file":
            groups["network"].add_argument(
                "--sumocfg", dest="sumocfg", type=Path, default=None,
                help="a study's SUMO configuration: its net, route file, end time and run options (e.g. rerouting)")
    groups["run"].add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _apply_sumocfg(ns: argparse.Namespace) -> StudyConfig:
    """Fill net file, route file, begin, end and step length from `--sumocfg`; return the study."""
    if ns.net_file is not None or ns.route_file is not None:
        raise P.ParameterError("--sumocfg: names the net and route files itself; leave out --net-file and --route-file")
    study = read_sumocfg(ns.sumocfg)
    if len(study.route_files) != 1:
        raise P.ParameterError(f"--sumocfg: {len(study.route_files)} route files; exactly one is supported")
    ns.net_file, ns.route_file = study.net_file, study.route_files[0]
    if ns.begin is None:
        ns.begin = study.begin
    if ns.end_time is None and study.end is not None:
        ns.end_time = int(study.end)
    if study.step_length is not None:
        ns.step_length = study.step_length
    return study


def params_from_args(ns: argparse.Namespace) -> P.SimulationParams:
    """Parsed arguments -> checked parameters; raises ParameterError on a bad value or combination."""
    study = _apply_sumocfg(ns) if getattr(ns, "sumocfg", None) is not None else None
    if ns.begin is None:
        ns.begin = P.DEFAULT_BEGIN
    if ns.end_time is None:
        ns.end_time = P.default_end_time(ns.begin) if isinstance(ns.begin, (int, float)) else P.DEFAULT_END_TIME
    values = {name: getattr(ns, name) for name in P.FIELDS}
    network = P.NetworkParams(**{f.name: values[f.name] for f in P.group_fields("network")})
    traffic = P.TrafficParams(**{f.name: values[f.name] for f in P.group_fields("traffic")})
    control = P.ControlParams(**{f.name: values[f.name] for f in P.group_fields("control")})
    params = P.SimulationParams(network, traffic, control, **{f.name: values[f.name] for f in P.group_fields("run")},
                                sumo_options=study.options if study else (),
                                additional_files=study.additional_files if study else ())
    # The grid's own check (junctions to remove), run here so it fails before any output is written.
    validate_network_params(network, yellow_time=control.yellow_time, min_green=control.min_green,
                            cycle_length=control.cycle_length_or_default)
    return params


def parse_simulation_params(argv: Union[Sequence[str], str]) -> P.SimulationParams:
    """Parse an argument list or an env-params string; raises ParameterError (never exits)."""
    tokens = shlex.split(argv) if isinstance(argv, str) else list(argv)
    parser = create_argument_parser()

    def raise_error(message: str) -> None:
        if message.startswith("argument ") and ": " in message:
            message = message.split(": ", 1)[1]
        raise P.ParameterError(message)

    parser.error = raise_error  # type: ignore[method-assign]
    return params_from_args(parser.parse_args(tokens))


# --- params -> arguments ------------------------------------------------------------------------


def _number_token(value: Any, kind: type = int) -> str:
    """Exact text of a number: a float field by repr, else an integral value without '.0'."""
    if kind is float or not float(value).is_integer():
        return repr(float(value))
    return str(int(value))


def to_token(value: Any, kind: type = str) -> str:
    """One value in the form its option parses back to the same value."""
    if isinstance(value, dict):  # a percentage mix
        return " ".join(f"{name} {_number_token(pct)}" for name, pct in value.items())
    if isinstance(value, tuple) and value and isinstance(value[0], P.DepartureWindow):
        return "custom:" + ";".join(f"{_clock(w.start_s)}-{_clock(w.end_s)},{_number_token(w.share_pct)}" for w in value)
    if isinstance(value, tuple):  # junction IDs
        return ",".join(value)
    if kind in (int, float):
        return _number_token(value, kind)
    return str(value)


def _clock(seconds: float) -> str:
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def to_argv(params: P.SimulationParams, fields: Optional[Iterable[str]] = None) -> List[str]:
    """`params` as arguments of `python -m src.cli` (every field that is set, in table order).

    `fields` limits them to those names (e.g. the network and its signal timing).
    Not expressible (and so refused): the run options of a `--sumocfg` study.
    """
    if params.sumo_options or params.additional_files:
        raise ValueError("params of a --sumocfg study carry its run options; replay them with --sumocfg")
    wanted = set(P.FIELDS if fields is None else fields)
    args: List[str] = []
    for spec in P.FIELDS.values():
        if spec.name not in wanted:
            continue
        owner = params if spec.group == "run" else getattr(params, spec.group)
        value = getattr(owner, spec.name)
        if value is None or value is False:
            continue
        args += [spec.option] if value is True else [spec.option, to_token(value, spec.kind)]
    return args


def to_command_line(params: P.SimulationParams, fields: Optional[Iterable[str]] = None) -> str:
    """`to_argv` quoted for a shell: the env-params string form."""
    return shlex.join(to_argv(params, fields))
