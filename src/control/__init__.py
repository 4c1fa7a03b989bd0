"""Signal controllers: cycle-based (`base.SignalController`) and acyclic (`base.PhaseSelectController`)."""

from __future__ import annotations

from typing import Callable, Dict, Mapping

from src.control.actuated import ActuatedController
from src.control.actuator import CycleTiming, PhaseActuator, SignalActuator, plan_timing, proportions_to_durations, softmax
from src.control.base import CycleMeasurement, LaneInfo, LaneSampler, PhaseSelectController, SignalController, run_cycle
from src.control.fixed import FixedTimeController
from src.control.max_pressure import MaxPressureController, MaxPressureCycleController
from src.network.phases import PhasePlan

CONTROLLERS: Dict[str, Callable[..., SignalController]] = {
    "fixed": FixedTimeController,
    "actuated": ActuatedController,
    "max_pressure": MaxPressureController,
    "max_pressure_cycle": MaxPressureCycleController,
}


def register_controller(name: str, factory: Callable[..., SignalController]) -> None:
    """Add a controller (tree_method, rl) under a name the CLI accepts."""
    CONTROLLERS[name] = factory


def create_controller(name: str, plans: Mapping[str, PhasePlan], timing: CycleTiming, **options) -> SignalController:
    if name not in CONTROLLERS:
        _load_optional_controllers()
    if name not in CONTROLLERS:
        raise ValueError(f"--traffic_control: unknown controller {name!r}; available: {', '.join(sorted(CONTROLLERS))}")
    return CONTROLLERS[name](plans, timing, **options)


def _load_optional_controllers() -> None:
    """Controllers whose modules pull heavy imports (torch) register on first use."""
    import importlib

    for module in ("src.control.tree_method", "src.rl.controller"):
        importlib.import_module(module)


__all__ = [
    "CONTROLLERS", "CycleMeasurement", "CycleTiming", "LaneInfo", "LaneSampler", "PhaseActuator",
    "PhaseSelectController", "SignalActuator", "SignalController", "create_controller", "plan_timing",
    "proportions_to_durations", "register_controller", "run_cycle", "softmax",
]
