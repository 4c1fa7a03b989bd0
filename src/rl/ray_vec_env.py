"""`RayVecEnv`: the scenario envs as Ray actors spread over the nodes of a Ray cluster.

Each env is one actor (one process, one CPU, its own libsumo) placed with Ray's SPREAD
strategy; the PPO learner, the normalisation and the tracking stay in the driver, which sees
an ordinary SB3 `VecEnv`. The fault contract is the subprocess workers' (`WorkerFaults` of
`src/rl/vec_env.py`): an actor that died, or whose node was lost, and a step that did not
answer within `env_step_timeout_s` are replaced by a new actor whose episode starts again,
counted in `faults/env_restarts`. Actors ignore SIGTERM/SIGINT: a stop belongs to the driver.

Every node reads the network and writes the env's SUMO outputs under the model folder, so on
a real cluster that folder (and the repository with its venv) lives on a shared file system,
as it does for the rest of a SLURM job.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections import Counter
from typing import Any, Callable, List, Optional, Sequence, Tuple

from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from src.rl import constants as C
from src.rl.vec_env import CLOSE_TIMEOUT_S, STARTUP_TIMEOUT_S, STOP_CLOSE_TIMEOUT_S, WorkerFaults, _WorkerLost

logger = logging.getLogger(__name__)

#: How Ray places the actors: SPREAD puts them on as many nodes as it can.
SCHEDULING_STRATEGY = "SPREAD"
INSTALL_HINT = "pip install -e '.[cluster]'"


class RayUnavailable(RuntimeError):
    """The Ray backend was asked for but Ray is not installed or the cluster is not reachable (one line)."""


def require_ray() -> Any:
    """The `ray` module, or RayUnavailable saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"env_backend 'ray' needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: Optional[str]) -> Any:
    """Join the Ray cluster at `address` ("auto", "HOST:PORT"; None: $RAY_ADDRESS or a new local
    one) unless this process is connected already. `ray.init` replaces the SIGTERM handler with
    one that exits at once; the trainer's own handlers (save, register, end KILLED) are put back."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    _check_reachable(address or os.environ.get("RAY_ADDRESS"))
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RayUnavailable(f"cannot join the Ray cluster at {address or 'a new local instance'}: "
                             f"{_first_line(err)}") from None
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    return ray


#: Seconds to wait for a cluster's head to accept a connection (ray.init itself retries for minutes).
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: Optional[str]) -> None:
    """RayUnavailable at once when a HOST:PORT address has nothing listening ("auto" and a new
    local instance are Ray's own business and fail quickly)."""
    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return
    except (OSError, ValueError) as err:
        raise RayUnavailable(f"no Ray cluster answers at {address} ({type(err).__name__}: {err}); start one with "
                             "`ray start --head` or pass --ray-address auto on its head node") from None


def cluster_shortfall(ray: Any, envs: int, cpus_per_env: float = C.RAY_CPUS_PER_ENV) -> Optional[str]:
    """Why the joined cluster cannot hold `envs` actors of `cpus_per_env` CPUs (None: it can).
    Actors that do not fit would wait for CPUs that never come."""
    cpus, total = envs * cpus_per_env, float(ray.cluster_resources().get("CPU", 0))
    if cpus <= total:
        return None
    return (f"{envs} envs at once need {cpus:g} CPUs of the Ray cluster, which has {total:g} on "
            f"{sum(1 for node in ray.nodes() if node['Alive'])} node(s): lower parallel_envs or add nodes")


class EnvActor:
    """One env in a Ray worker process; replies (and finds attributes) as SB3's subprocess worker does."""

    def __init__(self, env_fn: Callable[[], Any]) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):  # the driver stops the run, then us
            try:
                signal.signal(sig, signal.SIG_IGN)
            except ValueError:  # not the main thread: Ray runs sync actors on it, so not expected
                pass
        self.env = env_fn()

    def where(self) -> Tuple[str, int]:
        """The Ray node this env runs on and the process id there."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def spaces(self) -> tuple:
        return self.env.observation_space, self.env.action_space

    def reset(self, data: tuple) -> tuple:
        seed, options = data
        return self.env.reset(seed=seed, **({"options": options} if options else {}))

    def step(self, action: Any) -> tuple:
        observation, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info = {}
        if done:
            info["terminal_observation"] = observation
            observation, reset_info = self.env.reset()
        return observation, reward, done, info, reset_info

    def get_attr(self, name: str) -> Any:
        return self.env.get_wrapper_attr(name)

    def set_attr(self, name: str, value: Any) -> None:
        setattr(self.env, name, value)

    def env_method(self, name: str, args: tuple, kwargs: dict) -> Any:
        return self.env.get_wrapper_attr(name)(*args, **kwargs)

    def is_wrapped(self, wrapper_class: type) -> bool:
        from stable_baselines3.common.env_util import is_wrapped

        return is_wrapped(self.env, wrapper_class)

    def close(self) -> None:
        self.env.close()


class RayVecEnv(WorkerFaults, VecEnv):
    """One Ray actor per env; dead, lost or stuck actors are replaced (see the module docstring).

    The caller has joined the cluster (`connect`). `env_fns` are picklable env constructors.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        step_timeout_s: float,
        max_restarts: int,
        stop_flag: Optional[Callable[[], bool]] = None,
        names: Optional[Sequence[str]] = None,
        cpus_per_env: float = C.RAY_CPUS_PER_ENV,
    ) -> None:
        self._ray = require_ray()
        self._env_fns = list(env_fns)
        self.cpus_per_env = float(cpus_per_env)
        shortfall = cluster_shortfall(self._ray, len(self._env_fns), self.cpus_per_env)
        if shortfall:
            raise ValueError(shortfall)
        self._actor_class = self._ray.remote(EnvActor)
        self._init_faults(len(self._env_fns), step_timeout_s, max_restarts, stop_flag, names)
        self._actors: List[Any] = [None] * len(self._env_fns)
        self._pending: List[Any] = [None] * len(self._env_fns)
        for k in range(len(self._env_fns)):
            self._start_worker(k)
        try:
            observation_space, action_space = self._ray.get(self._actors[0].spaces.remote(), timeout=STARTUP_TIMEOUT_S)
            where = self.locations()
        except self._ray.exceptions.RayError as err:
            self._kill_all()
            raise RuntimeError(f"the env actors did not start: {_first_line(err)}") from None
        placed = Counter(self.nodes)
        logger.info("Ray backend: %d env actors on %d node(s): %s", len(where), len(placed),
                    ", ".join(f"{node[:8]} x{count}" for node, count in sorted(placed.items())))
        self.closed = False
        self.waiting = False
        VecEnv.__init__(self, len(self._env_fns), observation_space, action_space)

    def locations(self) -> List[Tuple[str, int]]:
        """(node id, process id) of each env's actor now, also kept in `nodes` and `pids` (a
        restart moves an env to a new actor; they hold where each env was when last asked)."""
        where = [tuple(w) for w in self._ray.get([actor.where.remote() for actor in self._actors],
                                                 timeout=STARTUP_TIMEOUT_S)]
        self.nodes, self.pids = [node for node, _ in where], [pid for _, pid in where]
        return where

    # -- worker lifecycle ----------------------------------------------------------------

    def _start_worker(self, k: int) -> None:
        options = dict(num_cpus=self.cpus_per_env, scheduling_strategy=SCHEDULING_STRATEGY, max_restarts=0,
                       max_task_retries=0)
        self._actors[k] = self._actor_class.options(**options).remote(self._env_fns[k])
        self._pending[k] = None

    def _kill(self, k: int) -> None:
        if self._actors[k] is not None:
            try:
                self._ray.kill(self._actors[k], no_restart=True)
            except Exception:  # noqa: BLE001 - already gone with its node: nothing to end
                pass
        self._pending[k] = None

    def _kill_all(self) -> None:
        for k in range(len(self._actors)):
            self._kill(k)

    def _send(self, k: int, command: str, data: Any) -> bool:
        try:
            self._pending[k] = getattr(self._actors[k], command).remote(data)
            return True
        except self._ray.exceptions.RayError:
            return False

    def _receive(self, k: int, timeout_s: Optional[float] = None) -> Any:
        ref = self._pending[k]

        def ready(poll_s: float) -> bool:
            done, _ = self._ray.wait([ref], timeout=poll_s)
            return bool(done)

        def fetch() -> Any:
            try:
                return self._ray.get(ref)
            except self._ray.exceptions.RayError as err:  # died, node lost, or the env raised
                raise _WorkerLost(f"actor lost ({type(err).__name__}: {_first_line(err)[:200]})") from None

        return self._await(k, ready, fetch, lambda: None, timeout_s)

    # -- VecEnv API ------------------------------------------------------------------------

    def _call(self, indices: VecEnvIndices, method: str, *args: Any) -> List[Any]:
        refs = [getattr(self._actors[k], method).remote(*args) for k in self._get_indices(indices)]
        return self._ray.get(refs, timeout=self.step_timeout_s)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> List[Any]:
        return self._call(indices, "get_attr", attr_name)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._call(indices, "set_attr", attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> List[Any]:
        return self._call(indices, "env_method", method_name, method_args, method_kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> List[bool]:
        return self._call(indices, "is_wrapped", wrapper_class)

    def close(self) -> None:
        """Close every actor (its SUMO writes its outputs); one that does not answer in time is
        killed. After a stop request the patience is short, as for the subprocess workers."""
        if self.closed:
            return
        patience = STOP_CLOSE_TIMEOUT_S if self.stop_flag() else CLOSE_TIMEOUT_S
        refs = []
        for actor in self._actors:
            try:
                refs.append(actor.close.remote())
            except self._ray.exceptions.RayError:
                pass
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=patience)
        self._kill_all()
        self.waiting = False
        self.closed = True


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

