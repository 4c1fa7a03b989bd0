"""The RESCO suite of `rl/benchmark.py --suite resco --maps DIR`: every map from its time of day.

Per map (a folder of DIR with one `.sumocfg`), in `<output>/<map>/`:
1. the classic controllers on the held-out SUMO seeds (`rl/evaluate.py --sumocfg`, the map's
   own programs, max-pressure at the map's decision step);
2. the recommended phase_select recipe trained on the map (`rl/server/train.py` on the study
   as a `sumocfg:` scenario, a padded junction input of `phase_slots`, validation on SUMO seeds
   of its own) once per training seed, seeds in parallel;
3. each seed's best model on the held-out SUMO seeds;
4. the map's table (delay as RESCO defines it, all-trips travel time, completion) in
   `result.json`, which marks the map done: a second call skips it.
Then the zero-shot table (every trained map's first-seed policy on every other map of the call,
no retraining; with `--baselines-only`, the maps trained by an earlier call) and
the suite summary (tables and a chart of delay per map and controller) as one MLflow run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd
import yaml

from benchmark_steps import REPO_ROOT, BenchmarkError, log_summary_run, run_step, say, train_seed
from src.network.phases import read_phase_plans
from src.sumo_integration.sumocfg import read_sumocfg

SUITE_DIR = REPO_ROOT / "rl/configs/suites"
SUITE_KEYS = {"maps", "algorithm", "reward", "phase_slots", "decisions", "min_episodes", "rollout_decisions",
              "evaluations", "seeds", "validation_seed", "heldout_seed", "repeats", "baselines"}
#: May be left out: the suite's changes to the algorithm file's values (the file stays the recipe).
OPTIONAL_SUITE_KEYS = {"algorithm_overrides"}
#: Table columns: what RESCO reports (delay) and what a deployment asks (all trips, completion).
TABLE_METRICS = {"delay": "mean_time_loss_all", "all_trips": "mean_travel_time_all", "completion": "completion_rate"}
RESULT_FILE = "result.json"


def load_suite(name: str) -> Dict[str, Any]:
    path = Path(name) if Path(name).suffix else SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise BenchmarkError(f"--suite {name}: no file {path}")
    suite = yaml.safe_load(path.read_text()) or {}
    missing, unknown = SUITE_KEYS - set(suite), set(suite) - SUITE_KEYS - OPTIONAL_SUITE_KEYS
    if missing or unknown:
        raise BenchmarkError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    base = yaml.safe_load((REPO_ROOT / suite["algorithm"]).read_text()) or {}
    strange = set(suite.get("algorithm_overrides") or {}) - set(base)
    if strange:
        raise BenchmarkError(f"{path}: algorithm_overrides {sorted(strange)} are not keys of {suite['algorithm']}")
    suite["name"] = path.stem
    return suite


def find_study(map_dir: Path) -> Path:
    """The map's `.sumocfg` (exactly one in its folder)."""
    studies = sorted(map_dir.glob("*.sumocfg"))
    if len(studies) != 1:
        raise BenchmarkError(f"{map_dir}: expected one .sumocfg, found {len(studies)}")
    return studies[0]


def map_facts(study: Path) -> Dict[str, Any]:
    """What the tables say of a map: signals, phases per signal, begin and end."""
    cfg = read_sumocfg(study)
    phases = [p.num_phases for p in read_phase_plans(cfg.net_file).values()]
    if not phases:
        raise BenchmarkError(f"{study}: its network has no signals")
    return {"study": str(study), "net_file": str(cfg.net_file), "signals": len(phases), "phases_min": min(phases),
            "phases_max": max(phases), "begin": float(cfg.begin), "end": float(cfg.end)}


def training_budget(suite: Dict[str, Any], facts: Dict[str, Any], decision_interval: int) -> Dict[str, int]:
    """PPO steps (junction decisions), steps per junction per update and the validation interval."""
    per_episode = facts["signals"] * int((facts["end"] - facts["begin"]) // decision_interval)
    timesteps = max(int(suite["decisions"]), int(suite["min_episodes"]) * per_episode)
    n_steps = max(64, math.ceil(int(suite["rollout_decisions"]) / facts["signals"]))
    rollout = n_steps * facts["signals"]
    eval_freq = max(rollout, (timesteps // int(suite["evaluations"])) // rollout * rollout)
    return {"timesteps": timesteps, "n_steps": n_steps, "eval_freq": eval_freq, "episode_decisions": per_episode}


def write_configs(suite: Dict[str, Any], name: str, facts: Dict[str, Any], decision_interval: int,
                  folder: Path) -> Dict[str, str]:
    """The five config files of the map's training (the algorithm file: the recipe with the
    suite's overrides, this map's rollout length and the suite's phase slots)."""
    folder.mkdir(parents=True, exist_ok=True)
    budget = training_budget(suite, facts, decision_interval)
    algorithm = yaml.safe_load((REPO_ROOT / suite["algorithm"]).read_text())
    algorithm.update(suite.get("algorithm_overrides") or {})
    algorithm.update(n_steps=budget["n_steps"], phase_slots=int(suite["phase_slots"]),
                     batch_size=min(int(algorithm.get("batch_size", 1024)), budget["n_steps"] * facts["signals"]))
    files = {
        "network": {"net_file": facts["net_file"], "control_mode": "phase_select",
                    "decision_interval": int(decision_interval)},
        "scenarios": {"scenarios": [{"name": name, "sumocfg": facts["study"]}]},
        "algorithm": algorithm,
        "execution": {"total_timesteps": budget["timesteps"], "eval_freq": budget["eval_freq"], "n_eval_episodes": 1,
                      "checkpoint_freq": budget["eval_freq"], "early_stopping_patience": 0, "parallel_envs": 1,
                      "sumo_seed": 0, "eval_sumo_seed": int(suite["validation_seed"]), "device": "cpu"},
    }
    paths = {}
    for role, content in files.items():
        path = folder / f"{role}.yaml"
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        paths[role] = str(path)
    paths["reward"] = str(REPO_ROOT / suite["reward"])
    paths["timesteps"] = budget["timesteps"]
    return paths


def evaluate_on(study: str, controllers: str, out_dir: Path, suite: Dict[str, Any], repeats: int,
                decision_interval: int, experiment: str, model: Optional[str] = None) -> pd.DataFrame:
    """`rl/evaluate.py` on the study from its time of day, on the held-out SUMO seeds."""
    if (out_dir / "evaluation.csv").is_file():  # done by an earlier call
        return pd.read_csv(out_dir / "evaluation.csv")
    command = [sys.executable, "rl/evaluate.py", "--sumocfg", study, "--controllers", controllers,
               "--repeats", str(repeats), "--seed", str(int(suite["heldout_seed"])),
               "--decision-interval", str(decision_interval), "--output-dir", str(out_dir),
               "--experiment-name", experiment]
    if model:
        command += ["--model", model]
    run_step(command, out_dir.with_suffix(".log"), f"evaluation of {controllers} on {Path(study).stem}")
    return pd.read_csv(out_dir / "evaluation.csv")


def _rows(table: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    return {row["controller"]: {key: float(row[f"{metric}_mean"]) for key, metric in TABLE_METRICS.items()}
            for _, row in table.iterrows()}


def run_map(suite: Dict[str, Any], name: str, maps_dir: Path, out: Path, seeds: Sequence[int], repeats: int,
            decisions: Optional[int], train: bool = True) -> Dict[str, Any]:
    """Baselines, training per seed and the rl rows of one map; `result.json` marks it done.
    Without `train`, the baselines alone (kept, so a later full run does not repeat them)."""
    folder = out / name
    if (folder / RESULT_FILE).is_file():
        say(f"[suite] {name}: done before ({folder / RESULT_FILE}); skipped")
        return json.loads((folder / RESULT_FILE).read_text())
    started = time.time()
    decision_interval = int(suite["maps"][name]["decision_interval"])
    facts = map_facts(find_study(maps_dir / name))
    local = dict(suite, decisions=decisions or suite["decisions"], min_episodes=1 if decisions else suite["min_episodes"])
    configs = write_configs(local, name, facts, decision_interval, folder / "configs")
    experiment = f"benchmark_resco_{name}"
    say(f"[suite] {name}: {facts['signals']} signals, {facts['phases_min']}-{facts['phases_max']} phases, "
        f"{facts['begin']:g}-{facts['end']:g} s, decisions every {decision_interval} s; "
        f"{configs['timesteps']} junction decisions per seed")
    baselines = evaluate_on(facts["study"], ",".join(suite["baselines"]), folder / "baselines", suite, repeats,
                            decision_interval, experiment)
    if not train:
        return {"map": name, **facts, "decision_interval": decision_interval, "rows": _rows(baselines),
                "rl_per_seed": {}, "models": {}, "timesteps": 0, "wall_s": time.time() - started}
    family = {"name": f"resco_{name}", "network": configs["network"], "train_scenarios": configs["scenarios"],
              "algorithm": configs["algorithm"], "reward": configs["reward"], "execution": configs["execution"]}
    trained = _train_seeds(family, seeds, int(configs["timesteps"]), folder)
    per_seed = {}
    for t in trained:
        table = evaluate_on(facts["study"], "rl", folder / f"rl_seed{t['seed']}", suite, repeats, decision_interval,
                            experiment, t["judged"])
        per_seed[t["seed"]] = _rows(table)["rl"]
    rows = _rows(baselines)
    rl = pd.DataFrame(per_seed.values())
    rows["rl"] = {**rl.mean().to_dict(), **{f"{k}_std": float(rl[k].std(ddof=1)) if len(rl) > 1 else 0.0 for k in rl}}
    result = {"map": name, **facts, "decision_interval": decision_interval, "rows": rows,
              "rl_per_seed": {str(k): v for k, v in per_seed.items()}, "models": {str(t["seed"]): t["judged"] for t in trained},
              "timesteps": configs["timesteps"], "wall_s": time.time() - started}
    (folder / RESULT_FILE).write_text(json.dumps(result, indent=1))
    say(f"[suite] {name}: done in {result['wall_s'] / 60:.1f} min\n{map_markdown(result)}")
    return result


def _train_seeds(family: Dict[str, Any], seeds: Sequence[int], timesteps: int, folder: Path) -> List[Dict[str, Any]]:
    """Every training seed of a map, as many at once as there are cores; each seed's outcome is
    kept in `train_seed<k>.json`, so a rerun trains only the seeds that did not finish."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(seeds), os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda seed: train_seed(family, seed, timesteps, folder), seeds))


def map_markdown(result: Dict[str, Any]) -> str:
    lines = ["| controller | delay, RESCO (s) | all trips (s) | completion | delay vs fixed |", "|---|---|---|---|---|"]
    fixed = result["rows"].get("fixed", {}).get("delay")
    for controller, row in result["rows"].items():
        std = row.get("delay_std")
        delay = f"{row['delay']:.1f}" + (f" ± {std:.1f}" if std else "")
        change = f"{(row['delay'] / fixed - 1) * 100:+.1f}%" if fixed else "-"
        label = f"rl ({len(result['rl_per_seed'])} seeds)" if controller == "rl" else controller
        lines.append(f"| {label} | {delay} | {row['all_trips']:.1f} | {row['completion']:.3f} | {change} |")
    return "\n".join(lines)


def transfer_table(suite: Dict[str, Any], results: Dict[str, Dict[str, Any]], out: Path, repeats: int) -> pd.DataFrame:
    """Delay of each trained map's first-seed policy on every map of the call (rows: trained on;
    columns: run on, maps with baselines only included); the diagonal is the map's own policy.
    Each pair is evaluated once and kept."""
    cells = []
    for source, result in results.items():
        if not result["models"]:
            continue
        model = result["models"][sorted(result["models"], key=int)[0]]
        for target, target_result in results.items():
            if source == target:
                delay = target_result["rl_per_seed"][sorted(target_result["rl_per_seed"], key=int)[0]]["delay"]
            else:
                table = evaluate_on(target_result["study"], "rl", out / "transfer" / f"{source}_on_{target}", suite,
                                    repeats, int(suite["maps"][target]["decision_interval"]),
                                    "benchmark_resco_transfer", model)
                delay = _rows(table)["rl"]["delay"]
            cells.append({"trained_on": source, "run_on": target, "delay": delay})
    return pd.DataFrame(cells).pivot(index="trained_on", columns="run_on", values="delay")


def transfer_markdown(table: pd.DataFrame, results: Dict[str, Dict[str, Any]]) -> str:
    maps = list(table.columns)
    lines = ["| trained on \\ run on | " + " | ".join(maps) + " |", "|---" * (len(maps) + 1) + "|"]
    for source in table.index:
        lines.append(f"| {source} | " + " | ".join(f"{table.loc[source, m]:.1f}" for m in maps) + " |")
    for reference in ("fixed", "max_pressure"):
        lines.append(f"| *{reference}* | " + " | ".join(f"{results[m]['rows'][reference]['delay']:.1f}" for m in maps) + " |")
    return "\n".join(lines)


def summary_chart(results: Dict[str, Dict[str, Any]], path: Path) -> Path:
    """Grouped bars: delay per map and controller."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = list(results)
    controllers = list(dict.fromkeys(c for result in results.values() for c in result["rows"]))  # rl: trained maps
    width = 0.8 / len(controllers)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(maps)), 4))
    for k, controller in enumerate(controllers):
        rows = [results[m]["rows"].get(controller, {}) for m in maps]
        values = [row.get("delay", float("nan")) for row in rows]
        errors = [row.get("delay_std", 0.0) for row in rows]
        ax.bar([i + k * width for i in range(len(maps))], values, width, yerr=errors, label=controller)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(maps))], maps)
    ax.set_yscale("log")  # the maps span 15 s (ingolstadt1) to 1,500 s (arterial4x4)
    ax.set_ylabel("delay per vehicle, RESCO (s, log scale)")
    ax.set_title("RESCO maps: delay per controller (held-out SUMO seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_suite(suite_name: str, maps_dir: Path, out: Path, only: Optional[List[str]], seeds: Optional[List[int]],
              repeats: Optional[int], decisions: Optional[int], transfer: bool, train: bool = True,
              jobs: Optional[int] = None) -> int:
    """The suite's maps (`only`: some of them), then the zero-shot table and the summary run.
    `jobs` processes at once (default: the cores): as many maps side by side as their training
    seeds leave room for (one process per seed; the maps' own order when one at a time)."""
    suite = load_suite(suite_name)
    maps_dir = Path(maps_dir).resolve()
    if not maps_dir.is_dir():
        raise BenchmarkError(f"--maps {maps_dir}: not a folder")
    names = [m for m in suite["maps"] if (maps_dir / m).is_dir()]
    unknown = sorted(set(only or []) - set(suite["maps"]))
    if unknown:
        raise BenchmarkError(f"--only: unknown map(s) {', '.join(unknown)}; the suite's maps: {', '.join(suite['maps'])}")
    names = [m for m in names if not only or m in only]
    if not names:
        raise BenchmarkError(f"--maps {maps_dir}: none of the suite's maps ({', '.join(suite['maps'])}) is there")
    out.mkdir(parents=True, exist_ok=True)
    seeds, repeats = seeds or list(suite["seeds"]), repeats or int(suite["repeats"])
    if jobs is not None and jobs < 1:
        raise BenchmarkError(f"--jobs {jobs}: expected 1 or more")
    maps_at_once = max(1, (jobs or os.cpu_count() or 1) // len(seeds))
    with ThreadPoolExecutor(max_workers=maps_at_once) as pool:
        done = list(pool.map(lambda name: run_map(suite, name, maps_dir, out, seeds, repeats, decisions, train), names))
    results = dict(zip(names, done))
    report = ["# RESCO suite", ""]
    for name, result in results.items():
        report += [f"## {name} ({result['signals']} signals, {result['phases_min']}-{result['phases_max']} phases, "
                   f"{result['wall_s'] / 60:.0f} min)", "", map_markdown(result), ""]
    if transfer and len(results) > 1 and any(result["models"] for result in results.values()):
        table = transfer_table(suite, results, out, repeats)
        table.to_csv(out / "transfer.csv")
        report += ["## Zero-shot transfer: delay (s), first training seed's policy", "", transfer_markdown(table, results), ""]
    (out / "suite.md").write_text("\n".join(report))
    (out / "suite.json").write_text(json.dumps(results, indent=1))
    summary_chart(results, out / "suite_delay.png")
    print("\n".join(report) + f"\nsaved in {out}", flush=True)
    _log_summary(results, out)
    return 0


def _log_summary(results: Dict[str, Dict[str, Any]], out: Path) -> None:
    log_summary_run("benchmark_resco", f"suite_{out.name}", out,
                    ("suite.md", "suite.json", "suite_delay.png", "transfer.csv"),
                    {f"{name}/{controller}/{key}": float(value) for name, result in results.items()
                     for controller, row in result["rows"].items() for key, value in row.items()
                     if not key.endswith("_std")})
