"""SB3 callbacks of a training run: schedules, episode metrics, progress, checkpoints,
evaluation on held-out scenarios with best-model saving and early stopping, stop requests.

All of them count on the global step (`model.num_timesteps`), so a resumed batch continues
them where the previous one stopped.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import ConstantSchedule
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization
from tqdm import tqdm

from src.rl.junction_vec_env import env_infos
from src.rl.utils import save_model_atomically

logger = logging.getLogger(__name__)


class ScheduleCallback(BaseCallback):
    """Sets learning rate and entropy coefficient from the global step before every update."""

    def __init__(self, lr_fn: Callable[[int], float], ent_fn: Optional[Callable[[int], float]]) -> None:
        super().__init__()
        self.lr_fn = lr_fn
        self.ent_fn = ent_fn
        self.history: List[tuple] = []

    def _apply(self) -> None:
        step = self.model.num_timesteps
        lr = float(self.lr_fn(step))
        self.model.learning_rate = lr
        self.model.lr_schedule = ConstantSchedule(lr)
        if self.ent_fn is not None:
            self.model.ent_coef = float(self.ent_fn(step))
        self.logger.record("train/ent_coef", float(self.model.ent_coef))
        self.history.append((step, lr, float(self.model.ent_coef)))

    def _on_training_start(self) -> None:
        self._apply()

    def _on_rollout_end(self) -> None:
        self._apply()

    def _on_step(self) -> bool:
        return True


class EpisodeMetricsCallback(BaseCallback):
    """Collects each finished episode's trip metrics per scenario and logs them once.

    `sink(step, metrics)` (MLflow) gets `scenario/<name>/<metric>` at the step the episode
    ended. They bypass SB3's logger on purpose: it keeps only the last value per key between
    two dumps (episodes of one scenario would be lost) and its console table cuts keys at 36
    characters. Env restarts are counted as `faults/env_restarts`.
    """

    LOGGED = ("mean_travel_time", "mean_travel_time_all", "mean_waiting_time", "mean_time_loss",
              "vehicles_arrived", "completion_rate", "throughput_per_hour", "teleports")

    def __init__(self, sink: Optional[Callable[[int, Dict[str, float]], None]] = None) -> None:
        super().__init__()
        self.sink = sink
        self.episodes: List[Dict[str, Any]] = []
        self.restarts = 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if info.get("env_restarted"):
                self.restarts += 1
                if self.sink is not None:
                    self.sink(self.num_timesteps, {"faults/env_restarts": float(self.restarts)})
            metrics = info.get("episode_metrics")
            if not metrics:
                continue
            scenario = info.get("scenario", "scenario")
            record = {f"scenario/{scenario}/{k}": float(metrics[k]) for k in self.LOGGED if k in metrics}
            if "episode_reward" in info:
                record[f"scenario/{scenario}/episode_reward"] = float(info["episode_reward"])
            self.episodes.append({"step": self.num_timesteps, "scenario": scenario, **metrics})
            if self.sink is not None:
                self.sink(self.num_timesteps, {k: v for k, v in record.items() if math.isfinite(v)})
            logger.info("episode done: %s  mean_travel_time %.1f s  completion %.2f  (step %d)", scenario,
                        metrics.get("mean_travel_time", float("nan")), metrics.get("completion_rate", float("nan")),
                        self.num_timesteps)
        return True


class ProgressCallback(BaseCallback):
    """Progress with speed and ETA: a tqdm bar in an interactive terminal, plain lines every
    `every_s` seconds in logs and under SLURM (where a bar would fill the output file)."""

    def __init__(self, total_timesteps: int, every_s: float = 10.0, bar: Optional[bool] = None) -> None:
        super().__init__()
        self.total = int(total_timesteps)
        self.every_s = every_s
        self.use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = None

    def _on_training_start(self) -> None:
        self.start_wall = time.perf_counter()
        self.start_step = self.model.num_timesteps
        self.last = self.start_wall
        if self.use_bar:
            self.bar = tqdm(total=self.total, unit="step", desc="training", dynamic_ncols=True)

    def _on_step(self) -> bool:
        done = self.model.num_timesteps - self.start_step
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return True
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._report(done, now)
        return True

    def _report(self, done: int, now: float) -> None:
        rate = done / max(now - self.start_wall, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        logger.info("  step %d/%d (%.0f%%)  %.2f steps/s  eta %.0f s", done, self.total,
                    100.0 * done / max(self.total, 1), rate, eta)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        else:  # the last line of a log says where training ended
            self._report(self.model.num_timesteps - self.start_step, time.perf_counter())


class CheckpointWithMetadataCallback(BaseCallback):
    """Saves `checkpoints/model_<step>_steps.zip` (with run metadata) every `save_freq` env steps."""

    def __init__(self, save_freq: int, save_dir: Path, metadata_fn: Callable[[], Dict[str, Any]],
                 on_save: Optional[Callable[[Path], None]] = None) -> None:
        super().__init__()
        self.save_freq = max(int(save_freq), 1)
        self.save_dir = Path(save_dir)
        self.metadata_fn = metadata_fn
        self.on_save = on_save
        self.saved: List[Path] = []
        self._next = None

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next:
            self._next += self.save_freq
            self.save_now()
        return True

    def save_now(self) -> Path:
        path = self.save_dir / f"model_{self.model.num_timesteps}_steps.zip"
        save_model_atomically(self.model, path, self.metadata_fn())
        self.saved.append(path)
        if self.on_save is not None:
            self.on_save(path)
        return path


def _finite_mean(values: List[Any]) -> Optional[float]:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else None


class HeldOutEvaluation(BaseCallback):
    """Every `eval_freq` steps: `n_episodes` deterministic episodes of every evaluation scenario
    (the held-out ones of `eval_scenarios`, else the training ones) with the current policy.

    Judged on mean all-trips travel time over the scenarios (the benchmark's measure; it counts
    vehicles kept out of the network, so a policy cannot win by blocking entries): a new best
    is saved to `best_path` (atomically, metadata and normalisation statistics included);
    `patience` evaluations in a row without an improvement of more than `min_delta` seconds stop
    training. Every evaluation goes to `sink` as `eval/...` metrics and to `history`, and its
    score to `on_evaluation(step, score)`, whose False stops training (a sweep's pruner).
    """

    JUDGED = "mean_travel_time_all"
    LOGGED = ("mean_travel_time", "mean_travel_time_all", "completion_rate")

    def __init__(self, eval_env: Any, eval_freq: int, n_episodes: int, best_path: Path,
                 metadata_fn: Callable[[], Dict[str, Any]], sink: Optional[Callable[[int, Dict[str, float]], None]] = None,
                 patience: int = 0, min_delta: float = 0.0,
                 on_evaluation: Optional[Callable[[int, float], bool]] = None) -> None:
        super().__init__()
        self.on_evaluation = on_evaluation
        self.eval_env = eval_env
        self.eval_freq = max(int(eval_freq), 1)
        self.n_episodes = max(int(n_episodes), 1)
        self.best_path = Path(best_path)
        self.metadata_fn = metadata_fn
        self.sink = sink
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.bad_evals = 0
        self.stopped = False
        self.history: List[Dict[str, Any]] = []
        self._next = self.eval_freq

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        if self.model.num_timesteps < self._next:
            return True
        while self._next <= self.model.num_timesteps:
            self._next += self.eval_freq
        return self.evaluate()

    def run_episodes(self) -> Dict[str, List[Dict[str, float]]]:
        """Trip metrics (and the episode reward) of each scenario's evaluation episodes."""
        if isinstance(self.model.get_env(), VecNormalize):
            sync_envs_normalization(self.model.get_env(), self.eval_env)
        names = [str(n) for n in self.eval_env.get_attr("scenario_name")]
        done: Dict[str, List[Dict[str, float]]] = {n: [] for n in dict.fromkeys(names)}
        obs = self.eval_env.reset()
        while any(len(v) < self.n_episodes for v in done.values()):
            actions, _ = self.model.predict(obs, deterministic=True)
            obs, _, _, infos = self.eval_env.step(actions)
            for info in env_infos(infos):
                metrics = info.get("episode_metrics")
                if metrics and len(done[info["scenario"]]) < self.n_episodes:
                    done[info["scenario"]].append({**metrics, "episode_reward": float(info.get("episode_reward", 0.0))})
        return done

    def evaluate(self) -> bool:
        step = int(self.model.num_timesteps)
        started = time.perf_counter()
        episodes = self.run_episodes()
        record: Dict[str, float] = {}
        for key in (*self.LOGGED, "episode_reward"):
            per_scenario = {name: _finite_mean([r.get(key) for r in runs]) for name, runs in episodes.items()}
            record.update({f"eval/{name}/{key}": v for name, v in per_scenario.items() if v is not None})
            means = [v for v in per_scenario.values() if v is not None]
            if means:
                record[f"eval/{key}"] = sum(means) / len(means)  # each scenario counts once
        score = record.get(f"eval/{self.JUDGED}", math.inf)
        self.history.append({"step": step, **record})
        if self.sink is not None:
            self.sink(step, record)
        improved = score < self.best - self.min_delta
        logger.info("evaluation at step %d over %d scenarios: travel time %.1f s, all trips %.1f s (best %.1f s)%s, "
                    "%.0f s", step, len(episodes), record.get("eval/mean_travel_time", math.nan), score,
                    min(self.best, score), " new best" if score < self.best else "", time.perf_counter() - started)
        if score < self.best:  # the score travels with the model: a continued run can compare
            save_model_atomically(self.model, self.best_path,
                                  {**self.metadata_fn(), "validation_score": score, "validation_step": step})
        if improved or self.best == math.inf:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        self.best = min(self.best, score)
        if self.on_evaluation is not None and not self.on_evaluation(step, score):
            logger.info("stopped at step %d: the sweep's pruner gave up on this trial (%s %.1f s)", step, self.JUDGED, score)
            return False
        if self.patience > 0 and self.bad_evals >= self.patience:
            logger.info("early stopping: %s has not improved by more than %g s for %d evaluations (best %.1f s)",
                        self.JUDGED, self.min_delta, self.patience, self.best)
            self.stopped = True
            return False
        return True


class RolloutStartCallback(BaseCallback):
    """Remembers the step counter at the last update so a stop mid-rollout can return to it.

    SB3 counts steps as they are collected; a stop before the rollout is trained on would
    otherwise save a model that claims experience it never learned from.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trained_steps: Optional[int] = None

    def _on_training_start(self) -> None:
        self.trained_steps = int(self.model.num_timesteps)

    def _on_rollout_start(self) -> None:
        self.trained_steps = int(self.model.num_timesteps)

    def _on_step(self) -> bool:
        return True

    def roll_back(self) -> None:
        if self.trained_steps is not None and self.model.num_timesteps != self.trained_steps:
            logger.info("stopped mid-rollout: step counter %d -> %d (the last update)", self.model.num_timesteps,
                        self.trained_steps)
            self.model.num_timesteps = self.trained_steps


class StopFlagCallback(BaseCallback):
    def __init__(self, flag: Callable[[], bool]) -> None:
        super().__init__()
        self.flag = flag

    def _on_step(self) -> bool:
        return not self.flag()
