"""Env workers that survive what a day-long cluster run meets: job-wide SIGTERM, a dead or a
stuck SUMO.

`WorkerFaults` is the fault contract every env backend keeps (here the subprocess workers,
`src/rl/ray_vec_env.py` the Ray actors); `ResilientSubprocVecEnv` is SB3's `SubprocVecEnv`
with it, which makes three differences:
- every reply from a worker is awaited with a timeout (`step_timeout_s`); a worker that
  died (EOF, non-zero exit) or did not answer in time is killed and started again from its
  factory, and its episode ends there as a truncation (SB3 bootstraps it from the last
  observation), with `info["env_restarted"]` saying why;
- while waiting it watches the trainer's stop flag (SIGTERM), and gives up waiting on a
  stuck worker after `STOP_GRACE_S` so the trainer can still save before SLURM's kill;
- after `max_restarts` restarts of one env it raises `EnvWorkerError` (a one-line reason),
  so the trainer saves an emergency checkpoint and ends the run FAILED.
Workers ignore SIGTERM and SIGINT (see `ignore_stop_signals`): shutdown belongs to the
main process, which then closes them.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import numpy as np
from stable_baselines3.common.vec_env import SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnvObs, VecEnvStepReturn
from stable_baselines3.common.vec_env.subproc_vec_env import _stack_obs, _worker

logger = logging.getLogger(__name__)

#: Seconds between checks of worker liveness and of the stop flag while waiting for a reply.
POLL_S = 0.5
#: After a stop request, how long to keep waiting for a slow step before abandoning it.
STOP_GRACE_S = 5.0
#: How long a closing worker may take before it is killed (normally, and after a stop request).
CLOSE_TIMEOUT_S = 10.0
STOP_CLOSE_TIMEOUT_S = 2.0
#: A new worker imports, starts SUMO and builds its first episode: it may take this long.
STARTUP_TIMEOUT_S = 300.0


class EnvWorkerError(RuntimeError):
    """An env worker failed more often than allowed; the message is one line."""


class StepAborted(RuntimeError):
    """A stop was requested while an env step was still outstanding."""


class _WorkerLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _start_helpers_shielded(start_method: str) -> None:
    """Start multiprocessing's forkserver and resource tracker with SIGTERM/SIGINT blocked.

    A blocked signal mask survives fork and exec, so those helpers (and every worker the
    forkserver forks) never see the job-wide SIGTERM of `scancel`; in this process the
    signals stay pending while blocked and arrive right after, so none is lost.
    """
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        if start_method == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _alive(process: Any) -> bool:
    """Whether a worker runs. Read from /proc: multiprocessing asks the forkserver, and reports a
    live worker as dead (exit code 255) once the forkserver itself is gone."""
    try:
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return process.is_alive()
    return state not in ("Z", "X")


def ignore_stop_signals() -> None:
    """In an env worker: SIGTERM/SIGINT of the whole job go to the trainer, which closes us."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class WorkerFaults:
    """The fault contract of an env backend whose envs live in workers (module docstring).

    A backend provides `_start_worker(k)`, `_kill(k)`, `_send(k, command, data)` (False: the
    worker is gone) and `_receive(k, timeout_s)` (built on `_await`); this class restarts,
    counts and reports. `command` is "step" (data: the action) or "reset" (data: (seed,
    options)); replies are those of SB3's subprocess worker.
    """

    num_envs: int
    waiting: bool

    def _init_faults(self, num_envs: int, step_timeout_s: float, max_restarts: int,
                     stop_flag: Optional[Callable[[], bool]], names: Optional[Sequence[str]]) -> None:
        self.step_timeout_s = float(step_timeout_s)
        self.max_restarts = int(max_restarts)
        self.stop_flag = stop_flag or (lambda: False)
        self.names = list(names or [f"env{k}" for k in range(num_envs)])
        self.restarts: List[int] = [0] * num_envs
        self.restart_log: List[dict] = []
        self._last_obs: List[Any] = [None] * num_envs
        self._sent: List[bool] = [False] * num_envs

    def _start_worker(self, k: int) -> None:
        raise NotImplementedError

    def _kill(self, k: int) -> None:
        raise NotImplementedError

    def _send(self, k: int, command: str, data: Any) -> bool:
        raise NotImplementedError

    def _receive(self, k: int, timeout_s: Optional[float] = None) -> Any:
        raise NotImplementedError

    def _restart(self, k: int, reason: str) -> Any:
        """Replace worker `k` and return the first observation of its new episode."""
        self._kill(k)
        self.restarts[k] += 1
        self.restart_log.append({"env": self.names[k], "reason": reason, "time": time.time()})
        if self.restarts[k] > self.max_restarts:
            raise EnvWorkerError(f"env {self.names[k]!r} failed {self.restarts[k]} times (last: {reason}); "
                                 f"max_env_restarts is {self.max_restarts}")
        logger.warning("env %s: %s; restarting it (restart %d of at most %d)", self.names[k], reason,
                       self.restarts[k], self.max_restarts)
        try:
            self._start_worker(k)
            if not self._send(k, "reset", (None, None)):
                raise _WorkerLost("the new worker is gone before its first reset")
            observation, _ = self._receive(k, max(self.step_timeout_s, STARTUP_TIMEOUT_S))
        except _WorkerLost as lost:
            return self._restart(k, f"restart failed: {lost.reason}")
        return observation

    def _await(self, k: int, ready: Callable[[float], bool], fetch: Callable[[], Any],
               lost: Callable[[], Optional[str]], timeout_s: Optional[float]) -> Any:
        """Wait for worker `k`'s reply (`ready(poll_s)` says it is there, `fetch()` takes it,
        `lost()` says why the worker is gone, or None): _WorkerLost if it died or timed out,
        StepAborted on a stop."""
        timeout_s = self.step_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        stop_seen_at: Optional[float] = None
        while True:
            if ready(POLL_S):
                return fetch()
            reason = lost()
            if reason:
                raise _WorkerLost(reason)
            now = time.monotonic()
            if self.stop_flag():
                stop_seen_at = stop_seen_at or now
                if now - stop_seen_at > STOP_GRACE_S:
                    raise StepAborted(f"stop requested; env {self.names[k]!r} did not answer within {STOP_GRACE_S:.0f} s")
            if now - started > timeout_s:
                raise _WorkerLost(f"no answer within {timeout_s:g} s (env_step_timeout_s)")

    # -- VecEnv API ------------------------------------------------------------------------

    def step_async(self, actions: np.ndarray) -> None:
        self._sent = [self._send(k, "step", action) for k, action in enumerate(actions)]
        self.waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        results = []
        for k in range(self.num_envs):
            try:
                if not self._sent[k]:
                    raise _WorkerLost("worker gone before the step was sent")
                results.append(self._receive(k))
            except _WorkerLost as lost:
                if self.stop_flag():
                    raise StepAborted(f"stop requested; env {self.names[k]!r} lost: {lost.reason}") from None
                observation = self._restart(k, lost.reason)
                last = self._last_obs[k] if self._last_obs[k] is not None else observation
                info = {"env_restarted": lost.reason, "TimeLimit.truncated": True, "terminal_observation": last}
                results.append((observation, 0.0, True, info, {}))
        self.waiting = False
        obs, rews, dones, infos, self.reset_infos = zip(*results)
        self._last_obs = list(obs)
        return _stack_obs(obs, self.observation_space), np.stack(rews), np.stack(dones), infos

    def reset(self) -> VecEnvObs:
        sent = [self._send(k, "reset", (self._seeds[k], self._options[k])) for k in range(self.num_envs)]
        results = []
        for k in range(self.num_envs):
            try:
                if not sent[k]:
                    raise _WorkerLost("worker gone before the reset was sent")
                results.append(self._receive(k))
            except _WorkerLost as lost:
                results.append((self._restart(k, lost.reason), {}))
        obs, self.reset_infos = zip(*results)
        self._reset_seeds()
        self._reset_options()
        self._last_obs = list(obs)
        return _stack_obs(obs, self.observation_space)


class ResilientSubprocVecEnv(WorkerFaults, SubprocVecEnv):
    """One env per process; dead or stuck workers are restarted (see the module docstring)."""

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        step_timeout_s: float,
        max_restarts: int,
        stop_flag: Optional[Callable[[], bool]] = None,
        start_method: str = "forkserver",
        names: Optional[Sequence[str]] = None,
    ) -> None:
        self._env_fns = list(env_fns)
        self._ctx = mp.get_context(start_method)
        self._init_faults(len(self._env_fns), step_timeout_s, max_restarts, stop_flag, names)
        _start_helpers_shielded(start_method)
        super().__init__(self._env_fns, start_method=start_method)
        self.remotes = list(self.remotes)
        self.work_remotes = list(self.work_remotes)

    # -- worker lifecycle ----------------------------------------------------------------

    def _start_worker(self, k: int) -> None:
        remote, work_remote = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker, args=(work_remote, remote, CloudpickleWrapper(self._env_fns[k])),
                                    daemon=True)
        process.start()
        work_remote.close()
        self.remotes[k] = remote
        self.work_remotes[k] = work_remote
        self.processes[k] = process

    def _kill(self, k: int) -> None:
        process = self.processes[k]
        if _alive(process):
            try:
                os.kill(process.pid, signal.SIGKILL)  # also ends a stopped (SIGSTOP) process
            except ProcessLookupError:
                pass
        process.join(timeout=5)
        try:
            self.remotes[k].close()
        except OSError:
            pass

    def _send(self, k: int, command: str, data: Any) -> bool:
        try:
            self.remotes[k].send((command, data))
            return True
        except (BrokenPipeError, OSError):
            return False

    def _receive(self, k: int, timeout_s: Optional[float] = None) -> Any:
        remote, process = self.remotes[k], self.processes[k]

        def ready(poll_s: float) -> bool:
            try:
                return remote.poll(poll_s)
            except (EOFError, OSError) as err:
                raise _WorkerLost(f"worker pipe closed ({type(err).__name__})") from None

        def fetch() -> Any:
            try:
                return remote.recv()
            except (EOFError, OSError) as err:
                raise _WorkerLost(f"worker pipe closed ({type(err).__name__})") from None

        def lost() -> Optional[str]:
            return None if _alive(process) else f"worker process exited with code {process.exitcode}"

        return self._await(k, ready, fetch, lost, timeout_s)

    def close(self) -> None:
        """Close every worker; one that does not finish in time is killed (never hang here).

        After a stop request the patience is short: SLURM kills the job about 30 s after its
        SIGTERM, and the model still has to be registered.
        """
        if self.closed:
            return
        patience = STOP_CLOSE_TIMEOUT_S if self.stop_flag() else CLOSE_TIMEOUT_S
        for k, remote in enumerate(self.remotes):
            try:
                if self.waiting and remote.poll(patience):
                    remote.recv()
                remote.send(("close", None))
            except (EOFError, OSError):
                pass
        deadline = time.monotonic() + patience
        for k, process in enumerate(self.processes):
            process.join(timeout=max(deadline - time.monotonic(), 0.1))
            if _alive(process):
                self._kill(k)
        for remote in self.remotes:
            try:
                remote.close()
            except OSError:
                pass
        self.waiting = False
        self.closed = True
