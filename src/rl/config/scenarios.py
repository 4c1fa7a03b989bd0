"""A scenario that names a study folder (`sumocfg:`): its route file is the scenario's demand and
its processing options (e.g. `ignore-route-errors`, `time-to-teleport`) go to every training run.

Kept out of `schema.py`/`experiment.py` (size); both call in here. The checked entry keeps the
study's path and its route file (`route_files`, so rotation, logging and evaluation treat it as a
route-file scenario); the options are read again from the study when the params are made, so a
saved config holds nothing the study does not.

Decisions (one line each when refused):
- one route file: SUMO loads a study's files together, a scenario runs one file per episode, so
  a study with several (e.g. vTypes apart) would change its demand; use `route_files:` to rotate;
- episodes run the study's own time span unless the execution file sets `begin`/`end_time`
  (`episode_span`); a study's end, if set, must not be before the episode's end; its
  departures outside the episode are not inserted (as `sumo -c` runs it), but some must lie inside;
- its net file must be the network YAML's `net_file` (same resolved path, or same sha256);
- its step-length, if set, must be the network's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from src.params import ParameterError
from src.rl.config.errors import ConfigError
from src.sumo_integration.sumocfg import StudyConfig
from src.traffic.route_files import file_checksum, read_scenario_sumocfg, resolve_route_files, validate_route_files


def _error(message: str) -> Exception:
    return ConfigError(message)


def _study_path(value: Any, base_dir: Any) -> Path:
    path = Path(str(value)).expanduser()
    return (Path(base_dir if base_dir is not None else ".") / path).resolve() if not path.is_absolute() else path


def read_study(entry: Mapping[str, Any], source: str, base_dir: Any = None) -> StudyConfig:
    """The study of a `sumocfg` scenario (checked: readable, exactly one route file)."""
    name = entry.get("name", "?")
    try:
        study = read_scenario_sumocfg(_study_path(entry["sumocfg"], base_dir), ".", str(name))
    except ParameterError as err:
        raise _error(f"{source}: {err}") from None
    where = f"{source}: scenario {name!r}: sumocfg {study_file(entry, base_dir)}"
    if len(study.route_files) != 1:
        raise _error(f"{where} names {len(study.route_files)} route files; a study scenario runs exactly one "
                     "(SUMO loads a study's files together); list them under route_files: to rotate them")
    return study


def study_file(entry: Mapping[str, Any], base_dir: Any = None) -> Path:
    return _study_path(entry["sumocfg"], base_dir)


def check_sumocfg_scenario(entry: Mapping[str, Any], source: str, base_dir: Any, generator_keys: Any) -> Dict[str, Any]:
    """The checked entry of a `sumocfg` scenario: name, absolute study path, its route file.

    A `route_files` key is accepted only when it is the study's own file (a saved, resolved
    config), any other is refused, as are generator keys: the study names the demand itself."""
    name = entry.get("name", "?")
    label = f"{source}: scenario {name!r}"
    mixed = sorted(k for k in entry if k in generator_keys)
    if mixed:
        raise _error(f"{label}: sumocfg names the demand itself; remove the generator key(s) {', '.join(mixed)} "
                     "or sumocfg")
    study = read_study(entry, source, base_dir)
    routes = [str(f) for f in study.route_files]
    if "route_files" in entry:
        try:
            given = [str(f) for f in resolve_route_files(entry["route_files"], base_dir or ".", str(name))]
        except ParameterError:
            given = None
        if given != routes:
            raise _error(f"{label}: sumocfg names the route files itself; remove route_files (or sumocfg)")
    return {"name": name, "sumocfg": str(study_file(entry, base_dir)), "route_files": routes,
            "route_order": "sequential", "route_seed": 0}


def is_study_scenario(entry: Mapping[str, Any]) -> bool:
    return "sumocfg" in entry


def check_study_against(entry: Mapping[str, Any], net_file: Any, begin: float, end_time: float, step_length: float,
                        source: str) -> StudyConfig:
    """A study scenario against the network and the episode (at load, before any run)."""
    study = read_study(entry, source)
    where = f"{source}: scenario {entry['name']!r}: sumocfg {entry['sumocfg']}"
    ours = Path(str(net_file)).resolve()
    if study.net_file.resolve() != ours and file_checksum(study.net_file) != file_checksum(ours):
        raise _error(f"{where} runs net file {study.net_file}, but the network's net_file is {ours} "
                     "(neither the same file nor the same content)")
    if study.end is not None and study.end < end_time:
        raise _error(f"{where} ends at {study.end:g} s, before the episode's end_time {end_time:g} s; "
                     "lower end_time or raise the study's end")
    if study.step_length is not None and study.step_length != step_length:
        raise _error(f"{where} sets step-length {study.step_length:g} s, the network's step_length is "
                     f"{step_length:g} s; set the same in both")
    try:
        validate_route_files(study.route_files, net_file, end_time, begin=begin, scenario=entry["name"],
                             allow_late=True)
    except ParameterError as err:
        raise _error(f"{source}: {err}") from None
    return study
