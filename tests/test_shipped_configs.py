"""Every config file the repository ships loads and validates (a renamed key must not leave a
stale file behind), and every benchmark family names files that exist and load together."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import CONFIG_FILES as DEFAULTS
from conftest import REPO_ROOT
from src.rl.config import load_modular_config

CONFIGS = REPO_ROOT / "rl/configs"
SHIPPED = [(role, path) for role in DEFAULTS for path in sorted((CONFIGS / role).glob("*.yaml"))]


@pytest.mark.parametrize("role, path", SHIPPED, ids=[f"{r}/{p.name}" for r, p in SHIPPED])
def test_shipped_config_file_loads(role, path):
    files = {**DEFAULTS, role: path}
    if "control_mode: phase_select" in path.read_text():  # the default (cycle) reward file is refused there
        files["reward"] = CONFIGS / "reward/delay.yaml"
    config = load_modular_config(**files)
    assert config.source_files[role] == str(path)


@pytest.mark.parametrize("family", sorted((CONFIGS / "benchmark").glob("*.yaml")), ids=lambda p: p.stem)
def test_benchmark_family_loads(family):
    sys.path.insert(0, str(REPO_ROOT / "rl"))
    from benchmark import load_family

    spec = load_family(str(family))
    config = load_modular_config(REPO_ROOT / spec["network"], REPO_ROOT / spec["train_scenarios"],
                                 REPO_ROOT / spec["algorithm"], REPO_ROOT / spec["reward"], REPO_ROOT / spec["execution"])
    held_out = load_modular_config(REPO_ROOT / spec["network"], REPO_ROOT / spec["heldout_scenarios"],
                                   REPO_ROOT / spec["algorithm"], REPO_ROOT / spec["reward"], REPO_ROOT / spec["execution"])
    assert not set(config.scenario_names) & set(held_out.scenario_names)  # judged on traffic it never saw
    seeds = {s["private_traffic_seed"] for s in config.scenarios}
    assert not seeds & {s["private_traffic_seed"] for s in held_out.scenarios}
