"""A new controller plugs in through the registry alone: defined here, named in
SIGNAL_CONTROLLERS, it runs through the CLI, the evaluation script and the evaluation harness
(real SUMO), and SUMO's own record of the signal switches shows its splits every cycle."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections import defaultdict
from multiprocessing import forkserver
from pathlib import Path
from typing import Dict, List, Set, Tuple

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, TINY_CONTROL, TINY_NETWORK, python, subprocess_env
from src.control import SignalController, proportions_to_durations
from src.control.base import CycleMeasurement
from src.control.registry import PLUGINS_ENV, UnknownControllerError
from src.controllers import controller_names, create_controller
from src.orchestration.evaluate import evaluate_controllers

NETWORK_YAML = REPO_ROOT / "rl/configs/network/grid3_small.yaml"
SCENARIOS_YAML = REPO_ROOT / "rl/configs/scenarios/small_mixed.yaml"
END_TIME = 600
#: TINY_CONTROL: a 60 s cycle, 3 s yellow, 5 s minimum green; a two-phase junction shares 54 s
#: of green, so all the spare green to the first phase is 49 s + 5 s.
CYCLE, FIRST_GREEN, MIN_GREEN = 60, 49.0, 5.0
SWITCHES = "tls_switches.xml"


class FirstPhaseFirstController(SignalController):
    """All spare green to each junction's first phase, every cycle. It asks SUMO to record
    every switch of its signals, so a test sees what SUMO ran, not what the controller meant."""

    def decide(self, measurement: CycleMeasurement) -> Dict[str, np.ndarray]:
        return {tls: proportions_to_durations(np.eye(p.num_phases)[0], self.timing) for tls, p in self.plans.items()}

    def initial_durations(self) -> Dict[str, np.ndarray]:
        return self.decide(None)

    def additional_files(self, out_dir: Path) -> List[Path]:
        events = "".join(f'<timedEvent type="SaveTLSSwitchTimes" source="{tls}" dest="{Path(out_dir) / SWITCHES}"/>'
                         for tls in self.plans)
        path = Path(out_dir) / "tls_switches.add.xml"
        path.write_text(f"<additional>{events}</additional>\n")
        return [path]


PLUGIN = {PLUGINS_ENV: "first_phase=test_controller_registry:FirstPhaseFirstController",
          "PYTHONPATH": str(Path(__file__).parent)}


def assert_first_phase_first(run_dir: Path) -> None:
    """Every junction's first phase got 49 s of green at each of the 10 cycle starts, every
    other green was the minimum: SUMO ran the plug-in's splits from the first cycle to the last."""
    greens: Dict[str, Set[Tuple[float, float]]] = defaultdict(set)
    for switch in ET.parse(run_dir / SWITCHES).getroot():  # one entry per link; a green is (begin, duration)
        greens[switch.get("id")].add((float(switch.get("begin")), float(switch.get("duration"))))
    assert len(greens) == 9  # every junction of the 3x3 grid
    for tls, entries in greens.items():
        assert {duration for _, duration in entries} == {FIRST_GREEN, MIN_GREEN}, tls
        starts = sorted(begin for begin, duration in entries if duration == FIRST_GREEN)
        assert starts == [float(k * CYCLE) for k in range(END_TIME // CYCLE)], tls


def test_plugin_controller_runs_through_the_cli_and_the_evaluation_script(tmp_path):
    env = subprocess_env(**PLUGIN)
    runs = {}
    for controller in ("fixed", "first_phase"):
        out = tmp_path / controller
        proc = subprocess.run([python(), "-m", "src.cli", *TINY_NETWORK.split(), *TINY_CONTROL.split(),
                               "--num_vehicles", "250", "--end-time", str(END_TIME), "--traffic_control", controller,
                               "--output-dir", str(out), "--quiet"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[controller] = json.loads((out / "metrics.json").read_text())
    assert runs["first_phase"]["controller"] == "first_phase"
    assert runs["first_phase"]["mean_waiting_time"] != runs["fixed"]["mean_waiting_time"]
    assert_first_phase_first(tmp_path / "first_phase")
    assert not (tmp_path / "fixed" / SWITCHES).exists()

    network = tmp_path / "net.yaml"
    network.write_text(NETWORK_YAML.read_text())
    proc = subprocess.run([python(), "rl/evaluate.py", "--network", str(network), "--scenarios", str(SCENARIOS_YAML),
                           "--scenario", "small_light", "--controllers", "fixed,first_phase", "--repeats", "1",
                           "--end-time", str(END_TIME), "--cycle-length", str(CYCLE), "--no-mlflow",
                           "--output-dir", str(tmp_path / "evaluation")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "evaluation" / "evaluation.csv").set_index("controller")
    assert table.loc["first_phase", "mean_waiting_time_mean"] != table.loc["fixed", "mean_waiting_time_mean"]
    assert_first_phase_first(tmp_path / "evaluation" / "runs" / "small_light" / "first_phase" / "rep0")


def test_plugin_controller_runs_in_the_evaluation_harness(tmp_path, monkeypatch):
    # a fork server started before the plug-in is named holds the environment of that moment;
    # the pool still hands the plug-in list to its workers
    forkserver.ensure_running()
    monkeypatch.setenv(PLUGINS_ENV, PLUGIN[PLUGINS_ENV])
    table = evaluate_controllers(NETWORK_YAML, SCENARIOS_YAML, ["fixed", "first_phase"], repeats=1, end_time=END_TIME,
                                 out_dir=tmp_path, workers=2, scenario_names=["small_light"],
                                 run_options=["--cycle-length", str(CYCLE)])
    assert list(table["controller"]) == ["fixed", "first_phase"]
    fixed, first = table.set_index("controller")["mean_waiting_time_mean"]
    assert first != fixed
    assert_first_phase_first(tmp_path / "runs" / "small_light" / "first_phase" / "rep0")


def test_registry_names_and_errors(monkeypatch):
    assert controller_names()[:6] == ("fixed", "actuated", "max_pressure", "max_pressure_cycle", "tree_method", "rl")
    monkeypatch.setenv(PLUGINS_ENV, "broken")
    with pytest.raises(UnknownControllerError, match="name=module:Class"):
        controller_names()
    monkeypatch.delenv(PLUGINS_ENV)
    with pytest.raises(UnknownControllerError, match="unknown controller 'nope'"):
        create_controller("nope", {}, None)
