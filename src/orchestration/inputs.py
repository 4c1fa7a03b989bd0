"""What an evaluation runs on, read and checked before anything is built or started.

Three forms give the scenarios, each as (name, base `src.cli` env-params string): YAML
configs (the network file with a scenarios file or route files, loaded and validated as for
training), a SUMO net file with route files, or study .sumocfg files. A run's string is its
scenario's base with the controller, SUMO seed, output folder and model put in, so every
run can be replayed alone with `python -m src.cli`. Mistakes are `EvaluationError`: one line.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from src import params as P
from src.controllers import controller_names
from src.rl.config import (
    ConfigError,
    ExperimentConfig,
    build_env_params_for_scenario,
    load_modular_config,
    network_params_string,
    shared_params,
)
from src.rl.training import model_dimensions, phase_counts
from src.rl.utils import IncompatibleModelError, check_compatible, read_model_metadata
from src.sumo_integration.sumocfg import read_sumocfg
from src.tracking.registry import ModelResolutionError, resolve_model_uri

PathLike = Union[str, Path]

#: Route file suffixes dropped to name a scenario after its file.
_ROUTE_SUFFIXES = (".rou.xml", ".trips.xml", ".routes.xml", ".xml")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class EvaluationError(ValueError):
    """A problem the user can fix (config, controller list, path, model URI); one-line message."""


def safe_name(text: str) -> str:
    """`text` with every run of characters other than letters, digits, _ . - as one `_`."""
    return _NAME_CHARS.sub("_", text)


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
    name = safe_name(name).strip("_") or "routes"
    return name if name[0].isalnum() else f"r{name}"


# --- one run's command line ---------------------------------------------------------------------


def _set_option(tokens: List[str], spellings: Sequence[str], value: str) -> List[str]:
    """Replace the value of an option (any of its spellings) or append it."""
    for i, token in enumerate(tokens[:-1]):
        if token in spellings:
            tokens[i + 1] = value
            return tokens
    return tokens + [spellings[0], value]


def run_params(base: str, controller: str, seed: int, output_dir: Path, model_path: Optional[str]) -> str:
    """A scenario's env-params string with this run's controller, SUMO seed, folder and model."""
    tokens = shlex.split(base)
    tokens = _set_option(tokens, ("--traffic_control", "--traffic-control"), controller)
    tokens = _set_option(tokens, ("--sumo-seed", "--sumo_seed"), str(seed))
    tokens = _set_option(tokens, ("--output-dir", "--output_dir"), str(output_dir))
    if controller == "rl":
        tokens = _set_option(tokens, ("--model-path", "--model_path"), str(model_path))
    return shlex.join(tokens)


# --- the scenarios ------------------------------------------------------------------------------


@dataclass
class Scenarios:
    """The evaluation's scenarios and network, whichever form they were given in."""

    runs: List[Tuple[str, str]]  # (scenario name, base env-params string), in evaluation order
    network_params: str  # the shared network as `src.cli` options ("" with per-scenario networks)
    horizon: int  # simulated seconds
    seed0: int  # SUMO seed of repeat 0
    inputs: Dict[str, Any]  # the files they came from, for the manifest
    config: Optional[ExperimentConfig] = None  # config mode: the loaded configuration
    net_file: Optional[Path] = None  # files mode: the given net file
    per_scenario_network: bool = False  # study mode: each .sumocfg brings its own network
    owners: Dict[str, str] = field(default_factory=dict)  # row -> its route-file scenario (config mode)
    names: List[str] = field(init=False)

    def __post_init__(self) -> None:
        self.names = [name for name, _ in self.runs]


def _stand_in(folder: Path, name: str, text: str = "# not used by the evaluation: defaults\n") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _load_config(network_config: Path, scenarios_file: Optional[Path], end_time: Optional[int],
                 execution_config: Optional[Path], begin: Optional[int] = None) -> ExperimentConfig:
    """The network and scenarios files through the training loader, with stand-in files for the
    roles an evaluation does not use (algorithm, reward; execution and, with route files, the
    scenarios unless given), so the network file is checked exactly as for training."""
    overrides = {key: value for key, value in (("begin", begin), ("end_time", end_time)) if value is not None} or None
    try:
        with tempfile.TemporaryDirectory(prefix="evaluation_config_") as name:
            folder = Path(name)
            scenarios = scenarios_file or _stand_in(folder, "scenarios", "scenarios:\n  - name: route_files\n")
            execution = execution_config or _stand_in(folder, "execution")
            config = load_modular_config(network_config, scenarios, _stand_in(folder, "algorithm"),
                                         _stand_in(folder, "reward"), execution, overrides=overrides)
    except ConfigError as err:
        raise EvaluationError(str(err)) from None
    sources = {"network": str(network_config)}
    if scenarios_file:
        sources["scenarios"] = str(scenarios_file)
    if execution_config:
        sources["execution"] = str(execution_config)
    return replace(config, source_files=sources)


def _route_file_scenarios(route_files: Sequence[PathLike], network_string: str, horizon: int,
                          begin: Optional[int] = None) -> List[Tuple[str, str]]:
    """(name, env-params) per route file, named after the file, on the network of `network_string`."""
    scenarios: List[Tuple[str, str]] = []
    for route in route_files:
        route_path = Path(route).resolve()
        if not route_path.is_file():
            raise EvaluationError(f"--route-files: file {str(route)!r} does not exist")
        name = scenario_name_for_route_file(route_path)
        if name in [s[0] for s in scenarios]:
            raise EvaluationError(f"--route-files: two files give the scenario name {name!r}; rename one")
        span = ["--begin", str(begin)] if begin is not None else []
        scenarios.append((name, f"{network_string} " + shlex.join(
            ["--route-file", str(route_path), *span, "--end-time", str(horizon), "--traffic_control", "fixed"])))
    return scenarios


def _study_scenarios(sumocfg_files: Sequence[PathLike], end_time: Optional[int], base_seed: Optional[int],
                     begin: Optional[int] = None) -> Scenarios:
    """Study configurations, each a scenario named after its folder, on its own network, run over
    its own time span unless `begin`/`end_time` are given."""
    runs: List[Tuple[str, str]] = []
    horizons = []
    for file in sumocfg_files:
        path = Path(file).resolve()
        try:
            study = read_sumocfg(path)
        except P.ParameterError as err:
            raise EvaluationError(str(err)) from None
        name = safe_name(path.parent.name).strip("_") or scenario_name_for_route_file(path)
        if name in [s[0] for s in runs]:
            name = f"{name}_{len(runs)}"
        args = ["--sumocfg", str(path), "--traffic_control", "fixed"]
        if begin is not None:
            args += ["--begin", str(begin)]
        if end_time is not None:
            args += ["--end-time", str(end_time)]
        start = begin if begin is not None else study.begin
        horizons.append(int(end_time if end_time is not None else study.end or P.default_end_time(start)))
        runs.append((name, shlex.join(args)))
    return Scenarios(runs, "", max(horizons), int(base_seed) if base_seed is not None else P.DEFAULT_SUMO_SEED,
                     {"sumocfg_files": [str(Path(f).resolve()) for f in sumocfg_files]}, per_scenario_network=True)


def _config_scenarios(network_config: Path, scenarios_file: Optional[Path], route_files: Optional[Sequence[PathLike]],
                      end_time: Optional[int], execution_config: Optional[Path], base_seed: Optional[int],
                      begin: Optional[int] = None) -> Scenarios:
    """The network YAML with a scenarios YAML (each scenario as for training) or route files."""
    config = _load_config(network_config, scenarios_file if route_files is None else None, end_time, execution_config,
                          begin)
    start = config.begin if config.begin is not None else P.DEFAULT_BEGIN
    horizon = int(config.end_time if config.end_time is not None else P.default_end_time(start))
    seed0 = int(base_seed) if base_seed is not None else int(config.sumo_seed)
    try:
        network_string = network_params_string(config)
        if route_files is not None:
            runs = _route_file_scenarios(route_files, network_string, horizon, config.begin)
        else:
            runs, owners = _rows_of(config)
    except ConfigError as err:
        raise EvaluationError(str(err)) from None
    if route_files is not None:
        inputs = {"network_config": str(network_config), "route_files": [str(Path(r).resolve()) for r in route_files]}
    else:
        inputs = {"network_config": str(network_config), "scenarios_file": str(scenarios_file),
                  "execution_config": str(execution_config) if execution_config else None}
    return Scenarios(runs, network_string, horizon, seed0, inputs, config=config,
                     owners=owners if route_files is None else {})


def _rows_of(config: ExperimentConfig) -> Tuple[List[Tuple[str, str]], Dict[str, str]]:
    """(row name, env-params) per scenario of a scenarios file; a route-file scenario with several
    files gives one row per file, `<scenario>.<file>` (held-out files evaluated one by one, as
    each training episode ran one). Also: row name -> its scenario's name (for `--scenario`)."""
    shared = shared_params(config)
    rows: List[Tuple[str, str]] = []
    owners: Dict[str, str] = {}
    for scenario in config.scenarios:
        files = scenario.get("route_files") or []
        if len(files) < 2:
            rows.append((scenario["name"], build_env_params_for_scenario(config, scenario, shared)))
            owners[scenario["name"]] = scenario["name"]
            continue
        for file in files:
            label = f"{scenario['name']}.{scenario_name_for_route_file(file)}"
            rows.append((label, build_env_params_for_scenario(config, {**scenario, "route_files": [file]}, shared)))
            owners[label] = scenario["name"]
    return rows, owners


def _file_scenarios(net_file: PathLike, route_files: Sequence[PathLike], end_time: Optional[int],
                    base_seed: Optional[int], begin: Optional[int] = None) -> Scenarios:
    """A SUMO net file with route files, each route file a scenario."""
    net_path = Path(net_file).resolve()
    if not net_path.is_file():
        raise EvaluationError(f"--net-file: file {str(net_file)!r} does not exist")
    horizon = int(end_time) if end_time is not None else P.default_end_time(begin or P.DEFAULT_BEGIN)
    network_string = shlex.join(["--net-file", str(net_path)])
    return Scenarios(_route_file_scenarios(route_files, network_string, horizon, begin), network_string, horizon,
                     int(base_seed) if base_seed is not None else P.DEFAULT_SUMO_SEED,
                     {"net_file": str(net_path), "route_files": [str(Path(r).resolve()) for r in route_files]},
                     net_file=net_path)


def read_scenarios(
    network_config: Optional[PathLike] = None,
    scenarios_file: Optional[PathLike] = None,
    net_file: Optional[PathLike] = None,
    route_files: Optional[Sequence[PathLike]] = None,
    sumocfg_files: Optional[Sequence[PathLike]] = None,
    execution_config: Optional[PathLike] = None,
    end_time: Optional[int] = None,
    base_seed: Optional[int] = None,
    scenario_names: Optional[Sequence[str]] = None,
    run_options: Sequence[str] = (),
    begin: Optional[int] = None,
) -> Scenarios:
    """The scenarios of whichever form was given (see `evaluate_controllers`), those named in
    `scenario_names` only, with `run_options` added to every run and the network."""
    execution = Path(execution_config) if execution_config else None
    if sumocfg_files:
        if network_config is not None or scenarios_file is not None or net_file is not None or route_files:
            raise EvaluationError("--sumocfg replaces --network/--scenarios/--net-file/--route-files; give one form")
        scenarios = _study_scenarios(sumocfg_files, end_time, base_seed, begin)
    elif network_config is not None and route_files is not None:
        if scenarios_file is not None:
            raise EvaluationError("--route-files replace --scenarios; give one of them")
        scenarios = _config_scenarios(Path(network_config), None, route_files, end_time, execution, base_seed, begin)
    elif net_file is not None or (route_files is not None and network_config is None):
        if network_config is not None or scenarios_file is not None:
            raise EvaluationError("--net-file/--route-files replace --network/--scenarios; give one form, not both")
        if net_file is None or not route_files:
            raise EvaluationError("--net-file and --route-files go together: a SUMO network and at least one route file")
        scenarios = _file_scenarios(net_file, route_files, end_time, base_seed, begin)
    else:
        if network_config is None or scenarios_file is None:
            raise EvaluationError("give --network and --scenarios (YAML files), or --net-file and --route-files")
        scenarios = _config_scenarios(Path(network_config), Path(scenarios_file), None, end_time, execution, base_seed,
                                      begin)

    runs = scenarios.runs
    wanted = [s.strip() for item in (scenario_names or []) if item for s in str(item).split(",") if s.strip()]
    if wanted:
        owners = scenarios.owners
        available = list(dict.fromkeys([*scenarios.names, *owners.values()]))  # a scenario selects its files' rows
        unknown = [s for s in wanted if s not in available]
        if unknown:
            raise EvaluationError(f"--scenario: unknown scenario {unknown[0]!r}; available: {', '.join(available)}")
        runs = [s for s in runs if s[0] in wanted or owners.get(s[0]) in wanted]
    if not runs:
        raise EvaluationError("no scenario to evaluate")
    network_string = scenarios.network_params
    extra = shlex.join([str(o) for o in run_options])
    if extra:
        network_string = f"{network_string} {extra}".strip()
        runs = [(name, f"{base} {extra}") for name, base in runs]
    return replace(scenarios, runs=runs, network_params=network_string)


# --- the policy ---------------------------------------------------------------------------------


def resolve_model(model: str, tracking_uri: Optional[str]) -> Dict[str, Optional[str]]:
    """A model path or URI -> local policy file and where it came from; EvaluationError if not found."""
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


def check_model_fits(model_file: Path, network_dir: Path, model: str) -> None:
    """The policy's observation and action sizes against the built network, before any run,
    for the model's own control mode and policy sharing (a junction-shared policy fits any
    network whose junctions have no more phases than its phase slots; a network-wide one needs its signals' phases)."""
    try:
        metadata = read_model_metadata(model_file)
        dims = model_dimensions(metadata, network_dir)
        check_compatible(metadata, dims["observation"], dims["action"], f"--model {model}",
                         phase_counts=phase_counts(network_dir))
    except (IncompatibleModelError, FileNotFoundError) as err:
        raise EvaluationError(str(err)) from None
    except (KeyError, ValueError) as err:  # feature names the engine does not know
        raise EvaluationError(f"--model {model}: does not fit this network: {err}") from None
