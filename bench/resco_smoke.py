#!/usr/bin/env python
"""Every controller once on every study of a maps folder, from its own time of day: a smoke run.

Per map: the classic controllers through `python -m src.cli --sumocfg`, then for each control
mode (`phase_select`, `cycle_splits`) a tiny PPO training on the map as a `sumocfg:` scenario
(`rl/local/train.py`, a few hundred steps, short episodes from the map's begin) and the trained
policy as the `rl` controller over the map's whole span. Prints one line per run: ran or
failed, wall time, delay (RESCO: `mean_time_loss_all`), completed trips, and our own warning
lines (SUMO's are left out). Runs one at a time; exit 1 when a run failed.

    .venv/bin/python bench/resco_smoke.py --maps ../shared/reference-data/resco [--only cologne8,ingolstadt21]
        [--controllers fixed,actuated,...] [--modes phase_select,cycle_splits] [--train-steps 256] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_resco_fixed import find_studies, study_summary  # noqa: E402
from common import REPO, python_env  # noqa: E402

CONTROLLERS = ("fixed", "actuated", "max_pressure", "max_pressure_cycle", "tree_method")
MODES = ("phase_select", "cycle_splits")
#: Simulated seconds of a training episode (from the map's begin): short, so a few hundred
#: steps see episode ends.
TRAIN_EPISODE_S = 600


def _run(cmd: List[str], log: Path, only_warnings: bool = False) -> Dict[str, object]:
    """Run `cmd`; wall time, exit code and the stderr lines that are ours (not SUMO's; with
    `only_warnings`, those that say warning, and the last line of a failure)."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=python_env(), capture_output=True, text=True)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("Warning: ")
             and "FutureWarning" not in line and "UserWarning" not in line and "warnings.warn" not in line]
    ours = [line for line in lines if "warn" in line.lower()] if only_warnings else lines
    if proc.returncode != 0 and lines:
        ours.append(lines[-1])
    return {"ok": proc.returncode == 0, "wall_s": time.perf_counter() - started, "warnings": ours,
            "code": proc.returncode}


def simulate(sumocfg: Path, controller: str, out: Path, model: Optional[Path] = None) -> Dict[str, object]:
    """One controller over the study's own span through the simulation CLI."""
    cmd = [sys.executable, "-m", "src.cli", "--sumocfg", str(sumocfg), "--traffic_control", controller,
           "--output-dir", str(out), "--quiet"]
    if model is not None:
        cmd += ["--model-path", str(model)]
    result = _run(cmd, out.with_suffix(".log"))
    metrics_file = out / "metrics.json"
    if result["ok"] and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        result.update(delay=metrics["mean_time_loss_all"], arrived=metrics["vehicles_arrived"])
    return result


def train(sumocfg: Path, mode: str, steps: int, work: Path, begin: float) -> Dict[str, object]:
    """A tiny PPO training on the study as a `sumocfg:` scenario; `model` is its final model."""
    work.mkdir(parents=True, exist_ok=True)
    study = read_net_file(sumocfg)
    files = {"network": work / "network.yaml", "scenarios": work / "scenarios.yaml", "execution": work / "execution.yaml",
             "algorithm": REPO / "rl/configs/algorithm/ppo_small.yaml", "reward": REPO / "rl/configs/reward/delay.yaml"}
    files["network"].write_text(yaml.safe_dump({"net_file": str(study), "control_mode": mode, "decision_interval": 5}))
    files["scenarios"].write_text(yaml.safe_dump({"scenarios": [{"name": sumocfg.stem, "sumocfg": str(sumocfg)}]}))
    files["execution"].write_text(yaml.safe_dump({
        "total_timesteps": steps, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "checkpoint_freq": 10**6,
        "eval_freq": 0, "early_stopping_patience": 0, "end_time": int(begin) + TRAIN_EPISODE_S, "parallel_envs": 1,
        "single_env": True}))
    cmd = [sys.executable, str(REPO / "rl/local/train.py"), *(a for role, path in files.items()
                                                              for a in (f"--{role}", str(path))),
           "--models-dir", str(work / "models"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    result = _run(cmd, work / "train.log", only_warnings=True)
    models = sorted((work / "models").glob("*/final_model.zip"))
    result["model"] = models[-1] if models else None
    result["ok"] = bool(result["ok"] and models)
    return result


def read_net_file(sumocfg: Path) -> Path:
    from src.sumo_integration.sumocfg import read_sumocfg

    return read_sumocfg(sumocfg).net_file


def _line(name: str, what: str, result: Dict[str, object]) -> str:
    status = "ran" if result["ok"] else f"FAILED ({result['code']})"
    delay = f"{result['delay']:8.1f}" if "delay" in result else " " * 8
    arrived = f"{result['arrived']:6.0f}" if "arrived" in result else " " * 6
    warnings = " | ".join(result["warnings"])[:300]
    return f"{name:<13} {what:<24} {status:<11} {result['wall_s']:7.1f} s  {delay} {arrived}  {warnings}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=Path, required=True, help="a folder of map folders, each with a .sumocfg")
    parser.add_argument("--only", default="", help="comma list of map names (default: all)")
    parser.add_argument("--controllers", default=",".join(CONTROLLERS))
    parser.add_argument("--modes", default=",".join(MODES), help="control modes of the rl runs ('' for none)")
    parser.add_argument("--train-steps", type=int, default=256, help="PPO steps of each tiny training")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    wanted = {m for m in args.only.split(",") if m}
    studies = [s for s in find_studies(args.maps) if not wanted or s.stem in wanted]
    if not studies:
        print(f"error: no */*.sumocfg under {args.maps}" + (f" named {args.only}" if wanted else ""), file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="resco_smoke_"))
    print(f"{'map':<13} {'run':<24} {'status':<11} {'wall':>9}  {'delay s':>8} {'arrived':>6}  our warnings")
    failed = 0
    for sumocfg in studies:
        info = study_summary(sumocfg)
        print(f"# {sumocfg.stem}: {info['signals']} signals, {info['phases_min']}-{info['phases_max']} green phases, "
              f"{info['begin']:g}-{info['end']:g} s", flush=True)
        for controller in filter(None, args.controllers.split(",")):
            result = simulate(sumocfg, controller, work / sumocfg.stem / controller)
            failed += not result["ok"]
            print(_line(sumocfg.stem, controller, result), flush=True)
        for mode in filter(None, args.modes.split(",")):
            trained = train(sumocfg, mode, args.train_steps, work / sumocfg.stem / f"train_{mode}", info["begin"])
            failed += not trained["ok"]
            print(_line(sumocfg.stem, f"train {mode}", trained), flush=True)
            if trained["ok"]:
                result = simulate(sumocfg, "rl", work / sumocfg.stem / f"rl_{mode}", trained["model"])
                failed += not result["ok"]
                print(_line(sumocfg.stem, f"rl {mode}", result), flush=True)
    print(f"working folder: {work}" if args.keep or failed else "")
    if not args.keep and not failed:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
