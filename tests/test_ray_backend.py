"""The Ray env backend on a real two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`:
a head and a second node, each its own raylet): a training over both nodes that loses one and
still finishes, SIGTERM to the trainer, the same SUMO trips as the subprocess backend for the
same actions, and the one-line refusals (no Ray, a cluster too small).

One cluster serves the whole file (starting one takes seconds); the nodes get a few logical
CPUs each, more than this machine has, as a cluster of small nodes would.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from conftest import process_children, tiny_scenario
from test_faults import Training, version_of
from test_platform import run_id_from, run_of, scenario, write_scenarios

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray", reason="the Ray backend needs the cluster extra: pip install -e '.[test,cluster]'")
from ray.cluster_utils import Cluster  # noqa: E402

#: Logical CPUs of the head and of the second node: 3 envs fit on both, and on the head alone
#: once the second node is lost.
HEAD_CPUS, WORKER_CPUS = 3, 2
THREE_SCENARIOS = [scenario("r_shortest", 150, 31, "shortest 100"), scenario("r_realtime", 200, 32, "realtime 100"),
                   scenario("r_mixed", 180, 33, "shortest 50 realtime 50")]


@pytest.fixture(scope="module")
def ray_cluster(one_ray_cluster_at_a_time):
    """A head and a second node; yields (cluster, second node). This process is not a driver
    of it until a test joins (`ray.init`); the training scripts join it as their own drivers."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": HEAD_CPUS})
    node = cluster.add_node(num_cpus=WORKER_CPUS)
    cluster.wait_for_nodes()
    state = {"cluster": cluster, "node": node}
    yield state
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite MLflow store for the file's training runs (each test reads its own run)."""
    from src.tracking.store import ensure_store

    uri = f"sqlite:///{tmp_path_factory.mktemp('ray_store') / 'mlflow.db'}"
    ensure_store(uri)
    return uri


def _descendants(pid: int) -> List[int]:
    children = process_children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def lose_node(state) -> None:
    """The second node dies as a machine does: its raylet and every process it started (the env
    actors on it) are killed at once; then a fresh second node joins for the tests after."""
    cluster, node = state["cluster"], state["node"]
    raylet = node.all_processes["raylet"][0].process.pid
    for pid in _descendants(raylet):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cluster.remove_node(node, allow_graceful=False)
    state["node"] = cluster.add_node(num_cpus=WORKER_CPUS)


def _trips(path: Path) -> List[Dict[str, str]]:
    """The tripinfo records of an episode (SUMO's header, with its date and paths, left out)."""
    return [dict(trip.attrib) for trip in ET.parse(path).getroot().iter("tripinfo")]


def test_same_actions_give_the_same_trips_on_ray_and_on_subprocesses(ray_cluster, tiny_network, tmp_path):
    from src.rl.environment import network_dimensions
    from src.rl.training import create_vectorized_env

    ray.init(address=ray_cluster["cluster"].address)
    params = [tiny_scenario(150, 41, end_time=300), tiny_scenario(200, 42, "realtime 100", end_time=300)]
    dims = network_dimensions(tiny_network)
    actions = np.random.default_rng(5).uniform(-1, 1, size=(12, 2, dims["action"])).astype(np.float32)
    trips = {}
    for backend in ("subprocess", "ray"):
        venv = create_vectorized_env(params, tiny_network, network_dimensions=dims, work_root=tmp_path / backend,
                                     scenario_names=["a", "b"], env_backend=backend)
        try:
            venv.seed(3)
            venv.reset()
            for step in actions:
                _, _, dones, _ = venv.step(step)
                if dones.all():
                    break
            assert dones.all(), "the 300 s episodes end after five 60 s cycles"
        finally:
            venv.close()
        trips[backend] = [_trips(tmp_path / backend / f"{k:02d}_{name}" / "last_episode" / "tripinfo.xml")
                          for k, name in enumerate("ab")]
        if backend == "ray":
            assert len(set(venv.nodes)) == 2  # one env on each node
    assert all(len(env_trips) > 20 for env_trips in trips["ray"])
    assert trips["ray"] == trips["subprocess"]


def test_a_stuck_actor_times_out_and_is_replaced(ray_cluster, tiny_network, tmp_path):
    from src.rl.environment import network_dimensions
    from src.rl.training import create_vectorized_env

    if not ray.is_initialized():
        ray.init(address=ray_cluster["cluster"].address)
    dims = network_dimensions(tiny_network)
    venv = create_vectorized_env([tiny_scenario(150, 43, end_time=300), tiny_scenario(150, 44, end_time=300)],
                                 tiny_network, network_dimensions=dims, work_root=tmp_path, env_backend="ray",
                                 step_timeout_s=5)
    stuck = venv.pids[0]
    try:
        venv.reset()
        action = np.zeros((2, dims["action"]), dtype=np.float32)
        venv.step(action)
        before = list(venv.restarts)  # a reset slower than 5 s on a loaded machine would count too
        stuck = venv.locations()[0][1]  # ... and have replaced the first actor
        os.kill(stuck, signal.SIGSTOP)  # a SUMO that never returns
        started = time.monotonic()
        _, _, dones, infos = venv.step(action)
        assert time.monotonic() - started < 150  # 5 s, then a new actor (its imports, SUMO start): not the default 600 s
        assert infos[0]["env_restarted"] == "no answer within 5 s (env_step_timeout_s)" and dones[0]
        assert venv.restarts == [before[0] + 1, before[1]]
        _, _, _, infos = venv.step(action)  # the new actor steps on
        assert not any("env_restarted" in info for info in infos)
    finally:
        venv.close()
        try:
            os.kill(stuck, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _train_on_ray(tmp_path: Path, store: str, address: str, *args: str) -> Training:
    return Training(tmp_path, store, ["--parallel-envs", "3", "--env-backend", "ray", "--ray-address", address,
                                      "--checkpoint-freq", "1000", *args], scenarios=THREE_SCENARIOS)


def test_training_over_two_nodes_survives_losing_one_and_registers(ray_cluster, tmp_path, store):
    """Three envs spread over both nodes; the second node dies mid-run (its envs with it): they
    are restarted on the nodes left, and the run trains all its steps, finishes and registers."""
    job = _train_on_ray(tmp_path, store, ray_cluster["cluster"].address, "--timesteps", "144")
    job.wait_for("episode done")
    assert any("3 env actors on 2 node(s)" in line for line in job.lines), "".join(job.lines[-40:])
    lose_node(ray_cluster)
    output = job.finish()
    assert job.proc.returncode == 0, output[-3000:]
    assert "actor lost" in output and "restarting it (restart 1 of at most 3)" in output
    run = run_of(store, run_id_from(output))
    assert run.info.status == "FINISHED" and run.data.params["env_backend"] == "ray"
    assert run.data.metrics["faults/env_restarts"] >= 1 and run.data.metrics["final/num_timesteps"] == 144
    version = version_of(store, run.info.run_id)
    assert (version.tags["interrupted"], version.tags["steps"]) == ("false", "144")


def test_sigterm_to_the_driver_saves_registers_and_ends_killed(ray_cluster, tmp_path, store):
    """On phase_select with the junction-shared policy: the Ray envs under `JunctionVecEnv`."""
    job = _train_on_ray(tmp_path, store, ray_cluster["cluster"].address, "--timesteps", "100000",
                        "--control-mode", "phase_select", "--reward", "rl/configs/reward/delay.yaml", "--n-steps", "4")
    job.wait_for("approx_kl")  # a PPO update done, the next rollout under way
    assert any("phase_select control, junction policy" in line for line in job.lines)
    job.signal_group(signal.SIGTERM)  # the driver's job; the actors live in the cluster's processes
    output = job.finish()
    assert job.proc.returncode == 3, output[-3000:]
    assert "Traceback" not in output
    run = run_of(store, run_id_from(output))
    assert run.info.status == "KILLED"
    assert version_of(store, run.info.run_id).tags["interrupted"] == "true"


def test_more_envs_at_once_than_the_cluster_has_cpus_is_one_line_exit_2(ray_cluster, tmp_path, capsys):
    """Actors that do not fit would wait for CPUs forever: refused before anything starts."""
    from src.rl import pipeline
    from src.rl.train_args import EXIT_USER_ERROR, add_common_arguments
    from test_platform import QUICK

    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    six = [scenario(f"r{k}", 150, 50 + k, "shortest 100") for k in range(HEAD_CPUS + WORKER_CPUS + 1)]
    files = write_scenarios(tmp_path / "six.yaml", six)
    args = parser.parse_args([*QUICK, "--scenarios", str(files), "--env-backend", "ray", "--parallel-envs", "6",
                              "--ray-address", ray_cluster["cluster"].address, "--models-dir", str(tmp_path / "m")])
    assert pipeline.main(args, "server") == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "6 envs at once need 6 CPUs of the Ray cluster, which has 5 on 2 node(s)" in err[0], err


def test_the_ray_backend_without_ray_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from src.rl import pipeline
    from src.rl.train_args import EXIT_USER_ERROR, add_common_arguments
    from test_platform import QUICK

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does without the extra
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    files = write_scenarios(tmp_path / "s.yaml", THREE_SCENARIOS[:2])
    args = parser.parse_args([*QUICK, "--scenarios", str(files), "--env-backend", "ray",
                              "--models-dir", str(tmp_path / "models")])
    assert pipeline.main(args, "server") == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Ray, which is not installed: pip install -e '.[cluster]'" in err[0], err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
