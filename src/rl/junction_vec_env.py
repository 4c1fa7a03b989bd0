"""`JunctionVecEnv`: parameter sharing across junctions with a plain SB3 PPO model.

Each junction of each scenario env becomes one entry of the vectorised env: its observation
is the junction's local view, its action one phase index, its reward the junction's own
(`info["junction_rewards"]`). PPO then trains one small policy on every junction's experience
(MPLight; RESCO's shared agents), and the model is an ordinary SB3 PPO zip whose size does
not depend on the network: saved, registered, resumed and loaded by `RLController` as before.

All junctions of an env end their episode together. Per-env information (episode metrics,
`Monitor`'s episode record, worker restarts) stays on the env's first junction only, so it is
counted once; every junction gets its own terminal observation for bootstrapping.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, List, Optional, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

#: Info keys every junction entry of an env carries; the rest stays on the first one.
SHARED_INFO_KEYS = ("scenario", "TimeLimit.truncated", "sim_time")


class JunctionVecEnv(VecEnvWrapper):
    """Entries = (env, junction) pairs of a `PhaseSelectEnv` VecEnv (observations (J, d))."""

    def __init__(self, venv: VecEnv) -> None:
        space = venv.observation_space
        if len(space.shape) != 2:
            raise ValueError(f"JunctionVecEnv needs per-junction observations (junctions, size); got {space.shape}")
        self.junctions, size = int(space.shape[0]), int(space.shape[1])
        phases = int(np.max(venv.action_space.nvec))
        self.venv = venv
        VecEnv.__init__(self, num_envs=venv.num_envs * self.junctions,
                        observation_space=gym.spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32),
                        action_space=gym.spaces.Discrete(phases))
        self.class_attributes = dict(inspect.getmembers(self.__class__))

    def _entries(self, per_env: Sequence[Any]) -> List[Any]:
        return [value for value in per_env for _ in range(self.junctions)]

    def _env_indices(self, indices: VecEnvIndices) -> List[int]:
        if indices is None:
            return list(range(self.venv.num_envs))
        entries = [indices] if isinstance(indices, int) else list(indices)
        return sorted({int(i) // self.junctions for i in entries})

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self.reset_infos = [dict(info) if j == 0 else {k: v for k, v in info.items() if k in SHARED_INFO_KEYS}
                            for info in self.venv.reset_infos for j in range(self.junctions)]
        return np.asarray(obs).reshape(self.num_envs, -1)

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(np.asarray(actions).reshape(self.venv.num_envs, self.junctions))

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        per_junction = np.empty((self.venv.num_envs, self.junctions), dtype=np.float32)
        entries: List[dict] = []
        for k, info in enumerate(infos):
            own = info.get("junction_rewards")
            per_junction[k] = own if own is not None else rewards[k]  # a restarted worker reports one value
            terminal = info.get("terminal_observation")
            for j in range(self.junctions):
                entry = {key: v for key, v in info.items() if key != "junction_rewards"} if j == 0 else \
                    {key: info[key] for key in SHARED_INFO_KEYS if key in info}
                entry["junction"] = j
                if terminal is not None:
                    entry["terminal_observation"] = np.asarray(terminal)[j]
                entries.append(entry)
        return (np.asarray(obs).reshape(self.num_envs, -1), per_junction.reshape(-1),
                np.repeat(np.asarray(dones), self.junctions), entries)

    def seed(self, seed: Optional[int] = None) -> Sequence[Any]:
        return self._entries(self.venv.seed(seed))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> List[Any]:
        envs = self._env_indices(indices)
        return self._entries(self.venv.get_attr(attr_name, envs))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self.venv.set_attr(attr_name, value, self._env_indices(indices))

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> List[Any]:
        return self._entries(self.venv.env_method(method_name, *method_args, indices=self._env_indices(indices),
                                                  **method_kwargs))

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> List[bool]:
        return self._entries(self.venv.env_is_wrapped(wrapper_class, self._env_indices(indices)))

    def close(self) -> None:
        self.venv.close()


def env_infos(infos: Iterable[dict]) -> List[dict]:
    """The infos that speak for a whole env: all of a plain VecEnv's, the first junction's here."""
    return [info for info in infos if info.get("junction", 0) == 0]
