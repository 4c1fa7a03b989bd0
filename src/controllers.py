"""Every controller a run can name: the engine's (`src/control/registry.py`) plus the trained policy.

The engine's registry lists only the controllers of `src/control`; the RL policy (`rl`,
`src/rl/controller.py`) is added here, one level above both packages, so the engine never
imports `src.rl`. The command line (`src/argv.py`) imports this module, so every process
that parses parameters (the CLI, evaluation workers) knows `rl`.
"""

from __future__ import annotations

from src.control.registry import controller_class, controller_names, create_controller, register_controller
from src.rl.controller import RLController

register_controller("rl", RLController)

__all__ = ["controller_class", "controller_names", "create_controller", "register_controller"]
