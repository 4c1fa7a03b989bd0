"""Reading a study's `.sumocfg`: its files, time span and the SUMO options it ran with.

A published study is only reproduced with its own run options (e.g. `ignore-route-errors`,
the rerouting device's adaptation settings); dropping them changes the result by 20% on the
Tree Method study. Output and report options are the project's own and are not taken over,
and the seed comes from `--sumo-seed`.

The same reader serves a training scenario that names a study folder (`sumocfg:`): errors
then name the scenario instead of the option (`label`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from src.params import ParameterError
from src.traffic.route_file import parse_sumo_time

#: Options the run sets itself (files, time span, seed) and sections it owns (outputs, reports, GUI).
_OWN_OPTIONS = frozenset({"net-file", "route-files", "additional-files", "begin", "end", "step-length",
                          "seed", "random", "configuration-file"})
_OWN_SECTIONS = frozenset({"output", "report", "gui_only", "random_number", "configuration"})


@dataclass(frozen=True)
class StudyConfig:
    """What a `.sumocfg` sets; paths are absolute (relative ones are relative to the file)."""

    net_file: Path
    route_files: Tuple[Path, ...]
    additional_files: Tuple[Path, ...]
    begin: float
    end: Optional[float]
    step_length: Optional[float]
    options: Tuple[Tuple[str, str], ...]  # (option name, value) of every other option


def _paths(value: str, base: Path) -> Tuple[Path, ...]:
    return tuple((base / part.strip()).resolve() for part in value.split(",") if part.strip())


def _time(value: Optional[str], name: str, path: Path, label: str) -> Optional[float]:
    """Seconds of a time option in any SUMO spelling ("3600", "1:00:00"); None if unset or -1."""
    if value is None:
        return None
    seconds = parse_sumo_time(value)
    if seconds is None:
        raise ParameterError(f"{label}: {path} sets {name} {value!r}, which is not a time in seconds or H:MM:SS")
    return None if seconds < 0 else seconds  # SUMO's "-1": no end


def read_sumocfg(path: Path, label: str = "--sumocfg") -> StudyConfig:
    """Parse `path`; raises ParameterError (one line starting with `label`) when it cannot be used.

    `label` is what the message names: the option by default, e.g. "scenario 'x': sumocfg"
    when a training scenario names the study.
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{label}: file {str(path)!r} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ParameterError(f"{label}: {path} is not readable XML ({err})") from None
    values = {}
    options: List[Tuple[str, str]] = []
    for section in root:
        if not isinstance(section.tag, str):
            continue  # comments
        for option in section:
            if not isinstance(option.tag, str) or "value" not in option.attrib:
                continue
            name, value = option.tag, option.attrib["value"]
            if name in _OWN_OPTIONS:
                values[name] = value
            elif section.tag not in _OWN_SECTIONS:
                options.append((name, value))
    base = path.parent
    if "net-file" not in values or not _paths(values["net-file"], base):
        raise ParameterError(f"{label}: {path} names no net-file")
    net = _paths(values["net-file"], base)[0]
    routes = _paths(values.get("route-files", ""), base)
    for file in (net, *routes):
        if not file.is_file():
            raise ParameterError(f"{label}: {path} names {file}, which does not exist")
    return StudyConfig(
        net_file=net,
        route_files=routes,
        additional_files=_paths(values.get("additional-files", ""), base),
        begin=_time(values.get("begin"), "begin", path, label) or 0.0,
        end=_time(values.get("end"), "end", path, label),
        step_length=_time(values.get("step-length"), "step-length", path, label),
        options=tuple(options),
    )


def option_args(options: Tuple[Tuple[str, str], ...]) -> List[str]:
    """SUMO command-line arguments of (name, value) options."""
    return [arg for name, value in options for arg in (f"--{name}", value)]
