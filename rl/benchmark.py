#!/usr/bin/env python
"""Policy benchmark: train on a scenario family with several seeds, judge on held-out traffic.

    python rl/benchmark.py --family grid4                  # rl/configs/benchmark/grid4.yaml
    python rl/benchmark.py --family grid4 --seeds 0 --timesteps 2000 --repeats 1   # a quick look
    python rl/benchmark.py --suite resco --maps ../shared/reference-data/resco     # RESCO's maps
    python rl/benchmark.py --suite resco --maps DIR --only cologne1 --seeds 0 --decisions 5000 --repeats 1

For each training seed it runs `rl/server/train.py` (one env per training scenario), then
`rl/evaluate.py` on the family's held-out scenarios: once for the classic controllers and once
per trained policy. The table (mean over held-out scenarios; the policy as mean ± std over
training seeds; change against fixed time) is printed, saved as CSV and Markdown in the output
folder, and logged to MLflow (experiment `benchmark_<family>`) with each policy's learning
diagnostics (episode reward first and last, final explained variance). Not part of the test
suite: a family takes from minutes (grid4) to hours (grid6_heavy). `--suite` runs a map suite
instead (`rl/benchmark_suite.py`: per map from its time of day, baselines, training per seed,
zero-shot transfer; resumable).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd
import yaml
from mlflow import MlflowClient

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmark_steps import BenchmarkError, log_summary_run, run_step, train_seed  # noqa: E402
from src.rl.learning_curve import CURVE_CSV, plot_curves  # noqa: E402
from src.tracking.store import resolve_tracking_uri  # noqa: E402

FAMILY_DIR = REPO_ROOT / "rl/configs/benchmark"
FAMILY_KEYS = {"network", "train_scenarios", "heldout_scenarios", "algorithm", "reward", "execution", "timesteps",
               "seeds", "repeats", "baselines"}
#: Optional family keys: `train_overrides` (config key -> value) go to the training script as
#: its command-line overrides, e.g. a control mode the shared network file does not set.
OPTIONAL_FAMILY_KEYS = {"train_overrides"}
#: What the table reports, per controller: mean over held-out scenarios.
METRICS = ("mean_travel_time", "mean_travel_time_all", "mean_time_loss_all", "completion_rate")


def load_family(name_or_path: str) -> Dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = FAMILY_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in FAMILY_DIR.glob("*.yaml")))
        raise BenchmarkError(f"--family {name_or_path}: no file {path} (families: {known})")
    family = yaml.safe_load(path.read_text()) or {}
    missing, unknown = FAMILY_KEYS - set(family), set(family) - FAMILY_KEYS - OPTIONAL_FAMILY_KEYS
    if missing or unknown:
        raise BenchmarkError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    family["name"] = path.stem
    return family


def evaluate(family: Dict, controllers: str, out_dir: Path, repeats: int, model: Optional[str] = None) -> pd.DataFrame:
    if (out_dir / "evaluation.csv").is_file():  # done by an earlier call with this output folder
        return pd.read_csv(out_dir / "evaluation.csv")
    command = [sys.executable, "rl/evaluate.py", "--network", family["network"], "--scenarios",
               family["heldout_scenarios"], "--execution", family["execution"], "--controllers", controllers,
               "--repeats", str(repeats), "--output-dir", str(out_dir), "--no-mlflow"]
    if model:
        command += ["--model", model]
    run_step(command, out_dir.with_suffix(".log"), f"evaluation of {controllers}")
    return pd.read_csv(out_dir / "evaluation.csv")


def learning_diagnostics(run_id: Optional[str]) -> Dict[str, float]:
    """Per training seed: episode reward and validation travel time at the start and the end,
    the best validation value, and explained variance (last, and mean over the last 10 updates)."""
    if not run_id:
        return {}
    client = MlflowClient(tracking_uri=resolve_tracking_uri())
    found: Dict[str, float] = {}
    keys = (("rollout/ep_rew_mean", "reward"), ("train/explained_variance", "explained_variance"),
            ("eval/mean_travel_time_all", "validation_all_trips"))
    for key, name in keys:
        history = [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
        if not history:
            continue
        found[f"{name}_first"], found[f"{name}_last"] = history[0], history[-1]
        if name == "explained_variance":
            found["explained_variance_last10"] = sum(history[-10:]) / len(history[-10:])
        if name == "validation_all_trips":
            found["validation_all_trips_best"] = min(history)
    return found


def learning_curves(trained: List[Dict], baselines: pd.DataFrame, out: Path) -> Optional[Path]:
    """One chart of every seed's curve (validation and training episodes) with the baselines'
    held-out all-trips travel times as horizontal lines."""
    curves = {}
    for t in trained:
        csv = Path(t["model"]).parent / "learning" / CURVE_CSV
        if csv.is_file():
            curves[f"seed {t['seed']}"] = pd.read_csv(csv)
    if not curves:
        return None
    lines = {f"{c} (held-out)": float(g["mean_travel_time_all_mean"].mean())
             for c, g in baselines.groupby("controller", sort=False)}
    return plot_curves(curves, out / "learning_curves.png", lines, title="all-trips travel time: validation "
                       "during training vs the baselines on the held-out scenarios")


def summary_table(baselines: pd.DataFrame, policies: List[pd.DataFrame]) -> pd.DataFrame:
    """One row per controller: metrics averaged over held-out scenarios; rl over seeds (± std)."""
    rows = []
    for controller, group in baselines.groupby("controller", sort=False):
        rows.append({"controller": controller, **{m: group[f"{m}_mean"].mean() for m in METRICS}})
    if policies:
        per_seed = pd.DataFrame([{m: table[f"{m}_mean"].mean() for m in METRICS} for table in policies])
        rows.append({"controller": f"rl ({len(policies)} seeds)", **per_seed.mean().to_dict(),
                     **{f"{m}_std": per_seed[m].std(ddof=1) if len(policies) > 1 else float("nan") for m in METRICS}})
    table = pd.DataFrame(rows)
    fixed = table.loc[table["controller"] == "fixed"]
    if not fixed.empty:
        for metric in ("mean_travel_time", "mean_travel_time_all", "mean_time_loss_all"):
            table[f"{metric}_vs_fixed_pct"] = (table[metric] / float(fixed[metric].iloc[0]) - 1.0) * 100.0
    return table


def to_markdown(table: pd.DataFrame) -> str:
    def cell(row, metric):
        std = row.get(f"{metric}_std")
        return f"{row[metric]:.1f}" + (f" ± {std:.1f}" if isinstance(std, float) and std == std else "")

    lines = ["| controller | travel time (s) | all trips (s) | delay, RESCO (s) | completion | travel time vs fixed "
             "| all trips vs fixed |", "|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        change = row.get("mean_travel_time_vs_fixed_pct", float("nan"))
        change_all = row.get("mean_travel_time_all_vs_fixed_pct", float("nan"))
        lines.append(f"| {row['controller']} | {cell(row, 'mean_travel_time')} | {cell(row, 'mean_travel_time_all')} | "
                     f"{cell(row, 'mean_time_loss_all')} | {row['completion_rate']:.3f} | {change:+.1f}% | "
                     f"{change_all:+.1f}% |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--family", help="a name in rl/configs/benchmark/ or a family YAML file")
    which.add_argument("--suite", help="a map suite in rl/configs/suites/ (resco), with --maps")
    parser.add_argument("--maps", help="--suite: the folder of map folders (each with its .sumocfg)")
    parser.add_argument("--only", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                        help="--suite: these maps only (comma list)")
    parser.add_argument("--decisions", type=int, help="--suite: junction decisions per training seed (default: the suite's)")
    parser.add_argument("--no-transfer", dest="transfer", action="store_false", help="--suite: skip the zero-shot table")
    parser.add_argument("--baselines-only", dest="train", action="store_false",
                        help="--suite: the classic controllers only (kept: a later full run trains and reuses them); "
                             "the zero-shot table then runs the policies of maps trained before on every map")
    parser.add_argument("--jobs", type=int, help="--suite: processes at once (default: the cores): maps run side by "
                                                 "side, each with its training seeds in parallel")
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], help="training seeds (default: the family's)")
    parser.add_argument("--timesteps", type=int, help="PPO steps per seed (default: the family's)")
    parser.add_argument("--repeats", type=int, help="SUMO seeds per held-out scenario (default: the family's)")
    parser.add_argument("--output-dir", help="default outputs/benchmark_<family>_<time>; --suite: outputs/suite_<suite> "
                        "(run again with the same folder to resume)")
    args = parser.parse_args(argv)
    if args.suite:
        return _suite(args, parser)
    try:
        family = load_family(args.family)
        seeds = args.seeds or list(family["seeds"])
        timesteps = args.timesteps or int(family["timesteps"])
        repeats = args.repeats or int(family["repeats"])
        out = Path(args.output_dir or REPO_ROOT / "outputs" / f"benchmark_{family['name']}_{datetime.now():%Y%m%d_%H%M%S}")
        out.mkdir(parents=True, exist_ok=True)
        trained = [train_seed(family, seed, timesteps, out) for seed in seeds]
        baselines = evaluate(family, ",".join(family["baselines"]), out / "baselines", repeats)
        policies = [evaluate(family, "rl", out / f"rl_seed{t['seed']}", repeats, t["judged"]) for t in trained]
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = summary_table(baselines, policies)
    diagnostics = pd.DataFrame([{"seed": t["seed"], **learning_diagnostics(t["run_id"])} for t in trained])
    table.to_csv(out / "benchmark.csv", index=False)
    diagnostics.to_csv(out / "learning.csv", index=False)
    learning_curves(trained, baselines, out)
    markdown = to_markdown(table)
    (out / "benchmark.md").write_text(markdown + "\n\n" + diagnostics.to_string(index=False) + "\n")
    print(f"\n{family['name']}: {len(seeds)} training seeds x {timesteps} steps, held-out "
          f"{family['heldout_scenarios']}, {repeats} SUMO seeds each\n\n{markdown}\n\n{diagnostics.to_string(index=False)}")
    print(f"\nsaved in {out}")
    log_to_mlflow(family["name"], out, table)
    return 0


def _suite(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from benchmark_suite import run_suite

    if not args.maps:
        parser.error("--suite needs --maps DIR (the folder of map folders)")
    out = Path(args.output_dir or REPO_ROOT / "outputs" / f"suite_{Path(args.suite).stem}")
    try:
        return run_suite(args.suite, Path(args.maps), out, args.only, args.seeds, args.repeats, args.decisions,
                         args.transfer, args.train, args.jobs)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def log_to_mlflow(family: str, out: Path, table: pd.DataFrame) -> None:
    """The table as a run of experiment `benchmark_<family>`, beside the training runs."""
    metrics = {}
    for _, row in table.iterrows():
        key = re.sub(r"[^A-Za-z0-9_]", "_", str(row["controller"])).strip("_")
        metrics.update({f"{key}/{m}": float(row[m]) for m in METRICS if row[m] == row[m]})
    log_summary_run(f"benchmark_{family}", f"table_{out.name}", out,
                    ("benchmark.csv", "benchmark.md", "learning.csv", "learning_curves.png"), metrics)


if __name__ == "__main__":
    sys.exit(main())
