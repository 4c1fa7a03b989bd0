"""Observation and reward normalisation whose statistics travel inside the model zip.

Training wraps its envs in SB3's `VecNormalize`; a policy trained on normalised
observations is only meaningful with those same statistics. They are stored as
`traffic_rl_normalization.json` inside the model zip (beside `traffic_rl_metadata.json`),
so every place that gets the zip (a checkpoint, `--resume-from`, the MLflow registry, the
pyfunc, `RLController`) gets the statistics with it. JSON rather than SB3's pickle: the
pyfunc and the controller read it without unpickling an env wrapper.
"""

from __future__ import annotations

import functools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

NORMALIZATION_NAME = "traffic_rl_normalization.json"


def _rms_state(rms: Any) -> Optional[Dict[str, Any]]:
    if rms is None:  # VecNormalize keeps no statistics for what it does not normalise
        return None
    return {"mean": np.asarray(rms.mean, dtype=float).tolist(), "var": np.asarray(rms.var, dtype=float).tolist(),
            "count": float(rms.count)}


def _set_rms(rms: Any, state: Optional[Mapping[str, Any]]) -> None:
    if rms is None or state is None:
        return
    rms.mean = np.asarray(state["mean"], dtype=np.float64).reshape(np.shape(rms.mean))
    rms.var = np.asarray(state["var"], dtype=np.float64).reshape(np.shape(rms.var))
    rms.count = float(state["count"])


def normalization_state(vec_normalize: Any) -> Dict[str, Any]:
    """What a `VecNormalize` knows, as plain JSON-able values."""
    return {
        "normalize_observations": bool(vec_normalize.norm_obs),
        "normalize_reward": bool(vec_normalize.norm_reward),
        "clip_obs": float(vec_normalize.clip_obs),
        "clip_reward": float(vec_normalize.clip_reward),
        "epsilon": float(vec_normalize.epsilon),
        "gamma": float(vec_normalize.gamma),
        "raw_columns": _columns(getattr(vec_normalize, "raw_columns", None)),
        "obs_rms": _rms_state(getattr(vec_normalize, "obs_rms", None)),
        "ret_rms": _rms_state(getattr(vec_normalize, "ret_rms", None)),
    }


def restore_normalization(vec_normalize: Any, state: Mapping[str, Any]) -> None:
    """Continue the saved running statistics (counts keep growing from where they were)."""
    _set_rms(getattr(vec_normalize, "obs_rms", None), state.get("obs_rms"))
    _set_rms(getattr(vec_normalize, "ret_rms", None), state.get("ret_rms"))


def _columns(columns: Optional[Sequence[int]]) -> Optional[Tuple[int, int]]:
    return None if columns is None else (int(columns[0]), int(columns[1]))


def keep_raw(scaled: np.ndarray, obs: np.ndarray, columns: Optional[Tuple[int, int]]) -> np.ndarray:
    """`scaled` with `columns` ([start, stop)) put back to their raw values from `obs`."""
    if columns is not None:
        scaled[..., columns[0]:columns[1]] = obs[..., columns[0]:columns[1]]
    return scaled


def saved_raw_columns(state: Optional[Mapping[str, Any]]) -> Optional[Tuple[int, int]]:
    """The observation columns a saved model's statistics leave raw (None: all normalised)."""
    return _columns((state or {}).get("raw_columns"))


def wrap_normalized(venv: Any, normalize_observations: bool, normalize_reward: bool, gamma: float, clip: float,
                    state: Optional[Mapping[str, Any]] = None, training: bool = True,
                    raw_columns: Optional[Sequence[int]] = None) -> Any:
    """`venv` inside a `VecNormalize`, continuing `state` when given; `venv` itself if both are off.

    `training=False` (evaluation envs) freezes the statistics and reports raw rewards.
    `raw_columns` ([start, stop)) pass unnormalised: flags the policy reads as they are (the
    phase-slot mask of `SlotMaskedPolicy`; a constant flag would otherwise normalise to 0).
    """
    if not (normalize_observations or normalize_reward or state):
        return venv
    wrapped = _partly_raw_class()(venv, training=training, norm_obs=normalize_observations,
                                  norm_reward=normalize_reward and training, clip_obs=clip, clip_reward=clip,
                                  gamma=gamma)
    wrapped.raw_columns = _columns(raw_columns)
    if state:
        restore_normalization(wrapped, state)
    return wrapped


@functools.lru_cache(maxsize=None)
def _partly_raw_class() -> type:
    """`VecNormalize` leaving `raw_columns` unscaled; built on first use (SB3 is imported lazily
    here: the controller and the pyfunc read statistics without it) and reachable as this
    module's `PartlyRawVecNormalize`, so `VecNormalize.save`/`load` and pickling find it."""
    from stable_baselines3.common.vec_env import VecNormalize

    class PartlyRawVecNormalize(VecNormalize):
        raw_columns: Optional[Tuple[int, int]] = None

        def _normalize_obs(self, obs: np.ndarray, obs_rms: Any) -> np.ndarray:
            return keep_raw(super()._normalize_obs(obs, obs_rms), obs, self.raw_columns)

    PartlyRawVecNormalize.__module__ = __name__
    PartlyRawVecNormalize.__qualname__ = "PartlyRawVecNormalize"
    return PartlyRawVecNormalize


def __getattr__(name: str) -> Any:
    if name == "PartlyRawVecNormalize":
        return _partly_raw_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_normalization(model_zip: Union[Path, BinaryIO]) -> Optional[Dict[str, Any]]:
    """The statistics saved in a model zip, or None for a model trained without them."""
    with zipfile.ZipFile(model_zip if hasattr(model_zip, "read") else Path(model_zip)) as archive:
        if NORMALIZATION_NAME not in archive.namelist():
            return None
        return json.loads(archive.read(NORMALIZATION_NAME))


@dataclass(frozen=True)
class ObservationNormalizer:
    """Frozen observation normalisation for inference: VecNormalize's formula, no update."""

    mean: np.ndarray
    var: np.ndarray
    epsilon: float
    clip: float
    active: bool
    raw_columns: Optional[Tuple[int, int]] = None

    @classmethod
    def from_state(cls, state: Optional[Mapping[str, Any]]) -> "ObservationNormalizer":
        if not state or not state.get("normalize_observations"):
            return cls(np.zeros(1), np.ones(1), 0.0, np.inf, False)
        rms = state["obs_rms"]
        return cls(np.asarray(rms["mean"], dtype=np.float64), np.asarray(rms["var"], dtype=np.float64),
                   float(state["epsilon"]), float(state["clip_obs"]), True, saved_raw_columns(state))

    @classmethod
    def from_model_zip(cls, model_zip: Union[Path, BinaryIO]) -> "ObservationNormalizer":
        return cls.from_state(read_normalization(model_zip))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if not self.active:
            return obs
        scaled = np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)
        return keep_raw(scaled, obs, self.raw_columns).astype(np.float32)
