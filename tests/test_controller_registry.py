"""A new controller plugs in through the registry alone: defined here, named in
SIGNAL_CONTROLLERS, it runs through the CLI and the evaluation harness (real SUMO)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, TINY_CONTROL, TINY_NETWORK, python, subprocess_env
from src.control import SignalController, proportions_to_durations
from src.control.base import CycleMeasurement
from src.control.registry import PLUGINS_ENV, UnknownControllerError
from src.controllers import controller_names, create_controller


class FirstPhaseFirstController(SignalController):
    """All spare green to each junction's first phase, every cycle."""

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return {tls: proportions_to_durations(np.eye(p.num_phases)[0], self.timing) for tls, p in self.plans.items()}

    def initial_durations(self) -> Dict[str, np.ndarray]:
        return self.decide(None)


PLUGIN = {PLUGINS_ENV: "first_phase=test_controller_registry:FirstPhaseFirstController",
          "PYTHONPATH": str(Path(__file__).parent)}


def test_plugin_controller_runs_through_the_cli_and_the_evaluation(tmp_path):
    env = subprocess_env(**PLUGIN)
    runs = {}
    for controller in ("fixed", "first_phase"):
        out = tmp_path / controller
        proc = subprocess.run([python(), "-m", "src.cli", *TINY_NETWORK.split(), *TINY_CONTROL.split(),
                               "--num_vehicles", "250", "--end-time", "600", "--traffic_control", controller,
                               "--output-dir", str(out), "--quiet"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[controller] = json.loads((out / "metrics.json").read_text())
    assert runs["first_phase"]["mean_waiting_time"] != runs["fixed"]["mean_waiting_time"]

    network = tmp_path / "net.yaml"
    network.write_text((REPO_ROOT / "rl/configs/network/grid3_small.yaml").read_text())
    proc = subprocess.run([python(), "rl/evaluate.py", "--network", str(network), "--scenarios",
                           "rl/configs/scenarios/small_mixed.yaml", "--scenario", "small_light", "--controllers",
                           "fixed,first_phase", "--repeats", "1", "--end-time", "600", "--no-mlflow",
                           "--output-dir", str(tmp_path / "evaluation")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "evaluation" / "evaluation.csv").set_index("controller")
    assert table.loc["first_phase", "mean_waiting_time_mean"] != table.loc["fixed", "mean_waiting_time_mean"]


def test_registry_names_and_errors(monkeypatch):
    assert controller_names()[:6] == ("fixed", "actuated", "max_pressure", "max_pressure_cycle", "tree_method", "rl")
    monkeypatch.setenv(PLUGINS_ENV, "broken")
    with pytest.raises(UnknownControllerError, match="name=module:Class"):
        controller_names()
    monkeypatch.delenv(PLUGINS_ENV)
    with pytest.raises(UnknownControllerError, match="unknown controller 'nope'"):
        create_controller("nope", {}, None)
