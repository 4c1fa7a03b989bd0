"""Steps the family benchmark and the map suites share: one logged subprocess, one training seed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]


class BenchmarkError(Exception):
    """A family file or a step of the benchmark that failed (one line)."""


def run_step(command: List[str], log: Path, what: str) -> str:
    """Run one step, its output teed to `log`; BenchmarkError with the last error line if it fails."""
    print(f"[benchmark] {what}: {' '.join(command[1:3])} ... (log {log})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        proc = subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, text=True)
    output = log.read_text()
    if proc.returncode != 0:
        errors = [line for line in output.splitlines() if "error" in line.lower()] or output.splitlines()[-1:]
        raise BenchmarkError(f"{what} failed (exit {proc.returncode}): {errors[-1] if errors else ''} (see {log})")
    return output


def train_seed(family: Dict, seed: int, timesteps: int, out: Path) -> Dict:
    """Train one seed with `rl/server/train.py`; the final model, the one to judge (the best on
    validation, when there was one) and the MLflow run. The outcome is kept in
    `train_seed<k>.json`: a second call with the same folder returns it without training."""
    record = out / f"train_seed{seed}.json"
    if record.is_file():
        outcome = json.loads(record.read_text())
        print(f"[benchmark] training seed {seed}: done before ({record})", flush=True)
        return outcome
    output = run_step([sys.executable, "rl/server/train.py", "--network", family["network"],
                       "--scenarios", family["train_scenarios"], "--algorithm", family["algorithm"],
                       "--reward", family["reward"], "--execution", family["execution"], "--seed", str(seed),
                       "--timesteps", str(timesteps), "--model-name", f"benchmark_{family['name']}",
                       "--experiment-name", f"benchmark_{family['name']}", "--batch-name", f"seed{seed}",
                       "--models-dir", str(out / "models"),
                       *[a for key, value in (family.get("train_overrides") or {}).items()
                         for a in (f"--{key.replace('_', '-')}", str(value))]],
                      out / f"train_seed{seed}.log", f"training seed {seed}")
    model = re.search(r"final model: (\S+)", output)
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", output)
    if not model:
        raise BenchmarkError(f"training seed {seed}: no final model in its output ({out / f'train_seed{seed}.log'})")
    final = Path(model.group(1))
    best = final.parent / "best" / "best_model.zip"  # chosen on the validation scenarios, when evaluated
    outcome = {"seed": seed, "model": str(final), "judged": str(best if best.is_file() else final),
               "run_id": run_id.group(1) if run_id else None}
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
