"""Steps the family benchmark and the map suites share: one logged subprocess, one training seed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]


class BenchmarkError(Exception):
    """A family file or a step of the benchmark that failed (one line)."""


def say(message: str) -> None:
    """One progress message as one write: steps of maps and seeds running side by side print
    from several threads, and `print` writes the text and its newline separately."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def step_environment() -> Dict[str, str]:
    """A step's environment: one math-library thread per process unless the caller chose, since
    the benchmarks run one process per core (steps side by side would otherwise oversubscribe)."""
    from src.orchestration.pool import one_math_thread

    env = dict(os.environ)
    one_math_thread(env)
    return env


def run_step(command: List[str], log: Path, what: str, append: bool = False) -> str:
    """Run one step, its output teed to `log` (after what it holds, with `append`); the step's
    output, or BenchmarkError with the last error line if it fails."""
    say(f"[benchmark] {what}: {' '.join(command[1:3])} ... (log {log})")
    log.parent.mkdir(parents=True, exist_ok=True)
    before = log.stat().st_size if append and log.is_file() else 0
    with open(log, "a" if append else "w") as handle:
        proc = subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, text=True,
                              env=step_environment())
    with open(log) as handle:
        handle.seek(before)
        output = handle.read()
    if proc.returncode != 0:
        errors = [line for line in output.splitlines() if "error" in line.lower()] or output.splitlines()[-1:]
        raise BenchmarkError(f"{what} failed (exit {proc.returncode}): {errors[-1] if errors else ''} (see {log})")
    return output


def _steps_of(model_zip: Path) -> int:
    from src.rl.utils import read_model_metadata

    try:
        return int(read_model_metadata(model_zip).get("num_timesteps") or 0)
    except Exception:  # a zip cut short by a kill: not a place to resume from
        return -1


def latest_checkpoint(models_dir: Path) -> Optional[Tuple[Path, int]]:
    """The most trained model a seed's earlier, interrupted call left (its periodic checkpoints
    and final models), with its step count; None when there is none."""
    found = [(zip_path, _steps_of(zip_path)) for pattern in ("*/checkpoints/*.zip", "*/final_model.zip")
             for zip_path in models_dir.glob(pattern)]
    found = [(path, steps) for path, steps in found if steps > 0]
    return max(found, key=lambda item: item[1]) if found else None


def best_validated(models_dir: Path) -> Optional[Path]:
    """The best model over every call of a seed (an interrupted one and its continuation): the
    lowest validation score recorded in the best models' metadata."""
    from src.rl.utils import read_model_metadata

    scored = []
    for path in models_dir.glob("*/best/best_model.zip"):
        score = read_model_metadata(path).get("validation_score")
        if score is not None:
            scored.append((float(score), path))
    return min(scored)[1] if scored else None


def train_seed(family: Dict, seed: int, timesteps: int, out: Path) -> Dict:
    """Train one seed with `rl/server/train.py`; the final model, the one to judge (the best on
    validation, when there was one) and the MLflow run. The outcome is kept in
    `train_seed<k>.json`: a second call with the same folder returns it without training, and a
    call after an interrupted one continues from its last checkpoint (`--resume-from`) for the
    steps left, judging the best model of both."""
    record = out / f"train_seed{seed}.json"
    if record.is_file():
        outcome = json.loads(record.read_text())
        say(f"[benchmark] training seed {seed}: done before ({record})")
        return outcome
    models_dir = out / "models" / f"seed{seed}"
    resume = latest_checkpoint(models_dir)
    remaining, extra = timesteps, []
    if resume is not None:
        remaining = timesteps - resume[1]
        extra = ["--resume-from", str(resume[0])]
        say(f"[benchmark] training seed {seed}: continuing from {resume[0]} (step {resume[1]}; "
            f"{max(remaining, 0)} left)")
    if remaining > 0:
        output = run_step([sys.executable, "rl/server/train.py", "--network", family["network"],
                           "--scenarios", family["train_scenarios"], "--algorithm", family["algorithm"],
                           "--reward", family["reward"], "--execution", family["execution"], "--seed", str(seed),
                           "--timesteps", str(remaining), "--model-name", f"benchmark_{family['name']}",
                           "--experiment-name", f"benchmark_{family['name']}", "--batch-name", f"seed{seed}",
                           "--models-dir", str(models_dir), *extra,
                           *[a for key, value in (family.get("train_overrides") or {}).items()
                             for a in (f"--{key.replace('_', '-')}", str(value))]],
                          out / f"train_seed{seed}.log", f"training seed {seed}", append=resume is not None)
        model = re.search(r"final model: (\S+)", output)
        run_id = re.search(r"MLflow run ([0-9a-f]{32})", output)
        if not model:
            raise BenchmarkError(f"training seed {seed}: no final model in its output ({out / f'train_seed{seed}.log'})")
        final, run = Path(model.group(1)), run_id.group(1) if run_id else None
    else:  # the interrupted call had trained every step
        final, run = resume[0], None
    best = best_validated(models_dir)  # chosen on the validation scenarios, when evaluated
    outcome = {"seed": seed, "model": str(final), "judged": str(best or final), "run_id": run}
    record.write_text(json.dumps(outcome))
    return outcome


def log_summary_run(experiment: str, run_name: str, out: Path, files: Sequence[str],
                    metrics: Mapping[str, float]) -> None:
    """A benchmark's tables as one MLflow run: the files of `out` that exist, and `metrics` at step 0."""
    from src.tracking.run import TrainingRun

    tracker = TrainingRun(experiment, run_name)
    status = "FAILED"
    try:
        for name in files:
            if (out / name).is_file():
                tracker.log_artifact(out / name)
        tracker.log_metrics(0, dict(metrics))
        status = "FINISHED"
    finally:
        tracker.end(status)
