"""Controller name -> class: adding an engine controller is one module and one line in `BUILTIN`.

Classes are named as "module:Class" and imported on first use, so a controller costs
nothing until it runs. `BUILTIN` holds only the controllers of `src/control`; the trained
policy (`rl`) is registered by `src/controllers.py`, above both packages, so the engine never
imports `src.rl`. Controllers of your own, outside this repository, plug in without editing
it through the environment variable `SIGNAL_CONTROLLERS="name=package.module:Class,..."`
(read in every process, so evaluation workers see them too) or `register_controller` in the
same process.

A controller class takes `(plans, timing, **options)`; the options it needs from a run (a
model path, the net file, ...) come from its classmethod `run_options(params, network)`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Dict, Mapping, Tuple, Union

BUILTIN: Dict[str, str] = {
    "fixed": "src.control.fixed:FixedTimeController",
    "actuated": "src.control.actuated:ActuatedController",
    "max_pressure": "src.control.max_pressure:MaxPressureController",
    "max_pressure_cycle": "src.control.max_pressure:MaxPressureCycleController",
    "tree_method": "src.control.tree_method:TreeMethodController",
}
PLUGINS_ENV = "SIGNAL_CONTROLLERS"

_registered: Dict[str, Union[str, type]] = {}


class UnknownControllerError(ValueError):
    """A controller name that no registry entry knows (one-line message)."""


def _plugins() -> Dict[str, str]:
    found = {}
    for item in filter(None, (part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise UnknownControllerError(f"{PLUGINS_ENV}: {item!r} is not name=module:Class")
        found[name.strip()] = target.strip()
    return found


def _entries() -> Dict[str, Union[str, type]]:
    return {**BUILTIN, **_plugins(), **_registered}


def controller_names() -> Tuple[str, ...]:
    """Every controller name the CLI and the evaluation accept, built-in first."""
    return tuple(_entries())


def register_controller(name: str, target: Union[str, type]) -> None:
    """Add a controller in this process: a class, or "module:Class" imported on first use."""
    _registered[name] = target


def controller_class(name: str) -> type:
    entries = _entries()
    if name not in entries:
        raise UnknownControllerError(f"unknown controller {name!r}; available: {', '.join(entries)}")
    target = entries[name]
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target


def create_controller(name: str, plans: Mapping[str, Any], timing: Any, **options: Any) -> Any:
    return controller_class(name)(plans, timing, **options)
