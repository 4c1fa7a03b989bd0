"""Shared fixtures: a tiny real network, scenario strings, and a throwaway MLflow store."""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# One pytest worker per core (xdist): math libraries starting a thread per core in every worker,
# and in the processes the tests start, would contend for the cores (set before torch loads).
from src.orchestration.pool import one_math_thread  # noqa: E402

one_math_thread(os.environ)

#: The five config files of a small laptop experiment, one per role.
CONFIG_FILES = {
    "network": REPO_ROOT / "rl/configs/network/grid3_small.yaml",
    "scenarios": REPO_ROOT / "rl/configs/scenarios/small_mixed.yaml",
    "algorithm": REPO_ROOT / "rl/configs/algorithm/ppo_small.yaml",
    "reward": REPO_ROOT / "rl/configs/reward/empirical.yaml",
    "execution": REPO_ROOT / "rl/configs/execution/quick_test.yaml",
}

#: A 3x3 grid small enough that a 600 s episode takes well under a second.
TINY_NETWORK = "--network-seed 7 --grid_dimension 3 --block_size_m 150 --lane_count 2 --signal-programs opposites"
TINY_CONTROL = "--cycle-length 60 --min-green 5 --yellow-time 3"


def tiny_scenario(num_vehicles: int = 200, seed: int = 11, routing: str = "shortest 100", end_time: int = 600,
                  extra: str = "") -> str:
    """An env-params string for the tiny network."""
    return (f"{TINY_NETWORK} {TINY_CONTROL} --num_vehicles {num_vehicles} --private-traffic-seed {seed} "
            f"--public-traffic-seed {seed + 1} --routing_strategy '{routing}' --end-time {end_time} {extra}").strip()


@pytest.fixture(scope="session")
def tiny_network(tmp_path_factory) -> Path:
    """The tiny network, built once per test session."""
    from src.rl.training import build_shared_network

    return build_shared_network(f"{TINY_NETWORK} {TINY_CONTROL}", tmp_path_factory.mktemp("tiny") / "network")


@pytest.fixture(autouse=True)
def isolated_mlflow_state():
    """MLflow keeps the active experiment in os.environ (MLFLOW_EXPERIMENT_ID, inherited by
    subprocesses) and the tracking URI in globals: undo both after every test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)
    mlflow.set_tracking_uri(saved.get("MLFLOW_TRACKING_URI"))
    mlflow.set_registry_uri(saved.get("MLFLOW_REGISTRY_URI"))


@pytest.fixture(scope="module")
def one_ray_cluster_at_a_time():
    """Held while a test file runs a Ray cluster: pytest workers (`-n`) run files at once, and
    two Ray clusters on one machine would share its default ports and `~/.ray`."""
    with open(Path(tempfile.gettempdir()) / f"pytest-ray-{os.getuid()}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
        fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store, selected through MLFLOW_TRACKING_URI as a user would."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    from src.tracking.store import ensure_store

    ensure_store(uri)
    return uri


def python() -> str:
    return sys.executable


def subprocess_env(**extra: str) -> dict:
    """This process's environment without MLflow run/experiment state, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")}
    env.update(extra)
    return env


def artifact_paths(store: str, run_id: str, path: str = "") -> set:
    """Every artifact path of an MLflow run, folders included."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    found = set()
    for item in client.list_artifacts(run_id, path or None):
        found.add(item.path)
        if item.is_dir:
            found |= artifact_paths(store, run_id, item.path)
    return found


def process_children() -> dict:
    """Every running process's children, from /proc: {parent pid: [child pids]}."""
    children: dict = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def free_port() -> int:
    """A loopback TCP port nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup + call + teardown), the slowest first: where the suite's time
    goes, file by file (pytest's own list is per test)."""
    per_file = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) in ("setup", "call", "teardown"):
                name = report.nodeid.split("::", 1)[0]
                per_file[name] = per_file.get(name, 0.0) + report.duration
    if per_file:
        slowest = sorted(per_file.items(), key=lambda kv: -kv[1])[:10]
        terminalreporter.write_line("slowest files: " + ", ".join(f"{Path(n).name} {s:.0f} s" for n, s in slowest))
