"""Reading a study's `.sumocfg`: its files, time span and the SUMO options it ran with.

A published study is only reproduced with its own run options (e.g. `ignore-route-errors`,
the rerouting device's adaptation settings); dropping them changes the result by 20% on the
Tree Method study. Output and report options are the project's own and are not taken over,
and the seed comes from `--sumo-seed`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from src.params import ParameterError

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


def read_sumocfg(path: Path) -> StudyConfig:
    """Parse `path`; raises ParameterError (one line naming --sumocfg) when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"--sumocfg: file {str(path)!r} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ParameterError(f"--sumocfg: {path} is not readable XML ({err})") from None
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
    if "net-file" not in values:
        raise ParameterError(f"--sumocfg: {path} names no net-file")
    net = _paths(values["net-file"], base)[0]
    routes = _paths(values.get("route-files", ""), base)
    for file in (net, *routes):
        if not file.is_file():
            raise ParameterError(f"--sumocfg: {path} names {file}, which does not exist")
    return StudyConfig(
        net_file=net,
        route_files=routes,
        additional_files=_paths(values.get("additional-files", ""), base),
        begin=float(values.get("begin", 0)),
        end=float(values["end"]) if "end" in values else None,
        step_length=float(values["step-length"]) if "step-length" in values else None,
        options=tuple(options),
    )


def option_args(options: Tuple[Tuple[str, str], ...]) -> List[str]:
    """SUMO command-line arguments of (name, value) options."""
    return [arg for name, value in options for arg in (f"--{name}", value)]
