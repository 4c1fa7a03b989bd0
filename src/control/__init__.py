"""Signal controllers: cycle-based (`base.SignalController`) and acyclic (`base.PhaseSelectController`)."""

from __future__ import annotations

from src.control.actuated import ActuatedController
from src.control.actuator import CycleTiming, PhaseActuator, SignalActuator, plan_timing, proportions_to_durations, softmax
from src.control.base import CycleMeasurement, LaneInfo, LaneSampler, PhaseSelectController, SignalController, run_cycle
from src.control.fixed import FixedTimeController
from src.control.max_pressure import MaxPressureController, MaxPressureCycleController
from src.control.registry import controller_class, controller_names, create_controller, register_controller


__all__ = [
    "ActuatedController", "CycleMeasurement", "FixedTimeController", "MaxPressureController",
    "MaxPressureCycleController", "controller_class", "controller_names", "CycleTiming", "LaneInfo", "LaneSampler", "PhaseActuator",
    "PhaseSelectController", "SignalActuator", "SignalController", "create_controller", "plan_timing",
    "proportions_to_durations", "register_controller", "run_cycle", "softmax",
]
