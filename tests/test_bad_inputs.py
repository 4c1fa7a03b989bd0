"""The bad-input corpus: every mistake a user can make with configs, command-line values,
resume sources and locations gives one line, exit code 2 (README: bad input), no traceback,
no MLflow run and no model folder. The training entry point runs for real in this process (as `main` of
rl/server/train.py); a few cases also go through the scripts as subprocesses."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import yaml
from mlflow import MlflowClient

from conftest import CONFIG_FILES as BASE
from conftest import REPO_ROOT, python, subprocess_env


def _yaml(role: str, change: Callable[[dict], None]) -> Callable[[Path], List[str]]:
    """A case that edits one of the five files."""

    def make(folder: Path) -> List[str]:
        data = yaml.safe_load(BASE[role].read_text())
        change(data)
        path = folder / f"{role}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return [f"--{role}", str(path)]

    return make


def _text(role: str, text: str) -> Callable[[Path], List[str]]:
    def make(folder: Path) -> List[str]:
        path = folder / f"{role}.yaml"
        path.write_text(text)
        return [f"--{role}", str(path)]

    return make


def _args(*argv: str) -> Callable[[Path], List[str]]:
    return lambda folder: list(argv)


def _first_scenario(**keys) -> Callable[[dict], None]:
    return lambda data: data["scenarios"][0].update(keys)


def _set(**keys) -> Callable[[dict], None]:
    return lambda data: data.update(keys)


def _resume_file(write: Callable[[Path], None]) -> Callable[[Path], List[str]]:
    def make(folder: Path) -> List[str]:
        path = folder / "model.zip"
        write(path)
        return ["--resume-from", str(path)]

    return make


def _metadata_only(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("traffic_rl_metadata.json", json.dumps({"observation_size": 232, "action_size": 18}))


def _garbage_policy(path: Path) -> None:
    from src.rl.utils import write_model_metadata

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": {":type:": "<class 'abc.ABCMeta'>"}}))
        archive.writestr("policy.pth", b"not a torch file")
    write_model_metadata(path, {"observation_size": 232, "action_size": 18})


def _other_network_model(path: Path) -> None:
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16).save(str(path))  # SB3 zip, no metadata


def _text_file_zip(path: Path) -> None:
    path.write_text("hello")


CASES: Dict[str, Tuple[Callable[[Path], List[str]], str]] = {
    # configs
    "unknown network key": (_yaml("network", _set(grid_size=4)), "grid_size"),
    "network key in a scenario": (_yaml("scenarios", _first_scenario(grid_dimension=4)), "grid_dimension"),
    "vehicles not a number": (_yaml("scenarios", _first_scenario(num_vehicles="many")), "num_vehicles"),
    "vehicles zero": (_yaml("scenarios", _first_scenario(num_vehicles=0)), "num_vehicles"),
    "routing mix not 100": (_yaml("scenarios", _first_scenario(routing_strategy="shortest 60 realtime 30")), "100"),
    "unknown routing": (_yaml("scenarios", _first_scenario(routing_strategy="teleport 100")), "teleport"),
    "unknown vehicle type": (_yaml("scenarios", _first_scenario(vehicle_types="tram 100")), "tram"),
    "bad departure pattern": (_yaml("scenarios", _first_scenario(departure_pattern="rush")), "departure_pattern"),
    "start hour 25": (_yaml("scenarios", _first_scenario(start_time_hour=25)), "start_time_hour"),
    "scenario name with a space": (_yaml("scenarios", _first_scenario(name="a b")), "name"),
    "duplicate scenario names": (_text("scenarios", "scenarios:\n  - name: a\n  - name: a\n"), "a"),
    "no scenarios": (_text("scenarios", "scenarios: []\n"), "scenarios"),
    "yaml syntax error": (_text("scenarios", "scenarios: [\n  - name: x\n"), "scenarios.yaml"),
    "missing scenarios file": (_args("--scenarios", "/nonexistent/s.yaml"), "/nonexistent/s.yaml"),
    "negative learning rate": (_yaml("algorithm", _set(learning_rate=-1)), "learning_rate"),
    "zero n_steps": (_yaml("algorithm", _set(n_steps=0)), "n_steps"),
    "net_arch text": (_yaml("algorithm", _set(net_arch="big")), "net_arch"),
    "unknown activation": (_yaml("algorithm", _set(activation="swish")), "activation"),
    "unknown lr schedule": (_yaml("algorithm", _set(lr_schedule="cosine")), "lr_schedule"),
    "unknown feature": (_yaml("algorithm", _set(features={"edge": ["colour"]})), "colour"),
    "execution key in algorithm": (_yaml("algorithm", _set(total_timesteps=5)), "total_timesteps"),
    "unknown reward": (_yaml("reward", _set(reward_function="happiness")), "happiness"),
    "unknown reward param": (_yaml("reward", _set(reward_params={"zeta": 1.0})), "zeta"),
    "zero step timeout": (_yaml("execution", _set(env_step_timeout_s=0)), "env_step_timeout_s"),
    "negative restarts": (_yaml("execution", _set(max_env_restarts=-1)), "max_env_restarts"),
    "unknown device": (_yaml("execution", _set(device="gpu")), "device"),
    "unknown env backend": (_yaml("execution", _set(env_backend="mpi")), "env_backend"),
    "cycle too short for the phases": (_yaml("network", _set(cycle_lengths=[10])), "cycle"),
    # command-line values
    "timesteps not a number": (_args("--timesteps", "abc"), "--timesteps"),
    "timesteps negative": (_args("--timesteps", "-5"), "timesteps"),
    "zero parallel envs": (_args("--parallel-envs", "0"), "parallel_envs"),
    "zero end time": (_args("--end-time", "0"), "end_time"),
    "learning rate text": (_args("--learning-rate", "fast"), "--learning-rate"),
    "unknown option": (_args("--turbo"), "--turbo"),
    "no Ray cluster at the address": (_args("--env-backend", "ray", "--ray-address", "127.0.0.1:1"),
                                      "no Ray cluster answers at 127.0.0.1:1"),
    "negative batch index": (_args("--chain-id", "c1", "--batch-index", "-1"), "--batch-index"),
    "batch index without chain": (_args("--batch-index", "1"), "--chain-id"),
    "chain without tracking": (_args("--chain-id", "c1", "--no-mlflow"), "--no-mlflow"),
    "chain batch without predecessor": (_args("--chain-id", "c1", "--batch-index", "2"), "batch 1 has no complete version"),
    # resume sources
    "resume file missing": (_args("--resume-from", "/nonexistent/model.zip"), "/nonexistent/model.zip"),
    "resume zip with only metadata": (_resume_file(_metadata_only), "not a usable PPO model"),
    "resume zip with garbage policy": (_resume_file(_garbage_policy), "not a usable PPO model"),
    "resume model of another network": (_resume_file(_other_network_model), "shapes"),
    "resume text file": (_resume_file(_text_file_zip), "not a saved model"),
    "resume unknown registered model": (_args("--resume-from", "models:/no_such_model/1"), "no_such_model"),
    "resume version not a number": (_args("--resume-from", "models:/grid3_small/newest"), "version must be a number"),
    "resume unknown run": (_args("--resume-from", "runs:/0123456789abcdef0123456789abcdef/model"), "runs:/"),
    "resume unknown alias": (_args("--resume-from", "models:/grid3_small@champion"), "champion"),
    "resume bad uri": (_args("--resume-from", "models:/"), "models:/"),
    # stores
    "file store without MLFLOW_ALLOW_FILE_STORE": (lambda folder: ["--tracking-uri", f"file://{folder}/mlruns"],
                                                   "MLFLOW_ALLOW_FILE_STORE=true"),
}


def _server_parser():
    from src.rl.train_args import OneLineParser, add_common_arguments

    parser = OneLineParser(prog="rl/server/train.py")
    add_common_arguments(parser)
    parser.add_argument("--single-env", dest="single_env", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    return parser


def run_main(argv: List[str], capsys) -> Tuple[int, str]:
    """rl/server/train.py's main in this process: (exit code, stderr)."""
    from src.rl.pipeline import main

    try:
        code = main(_server_parser().parse_args(argv), "server")
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, needle: str) -> None:
    assert code == 2, (code, err)  # the README's exit code for bad input
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert needle in lines[0], (needle, lines[0])


def all_runs(store: str) -> list:
    client = MlflowClient(tracking_uri=store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory) -> str:
    """One store for the whole corpus (a new SQLite store costs seconds); every case leaves it empty."""
    from src.tracking.store import ensure_store

    return ensure_store(f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'mlflow.db'}")


@pytest.fixture()
def store(corpus_store, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", corpus_store)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    return corpus_store


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_with_no_run_and_no_folder(case, tmp_path, store, capsys):
    make, needle = CASES[case]
    models = tmp_path / "models"
    argv = [*(a for role, path in BASE.items() for a in (f"--{role}", str(path))), "--end-time", "360",
            "--models-dir", str(models)]
    code, err = run_main(argv + make(tmp_path), capsys)
    assert_one_line(code, err, needle)
    assert all_runs(store) == []
    assert not models.exists() or list(models.iterdir()) == []


# --- locations: real read-only and full file systems (tmpfs mounts, root only) ------------


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    """A read-only folder and a 64 KiB folder, each a real tmpfs mount."""
    root = tmp_path_factory.mktemp("mounts")
    readonly, full = root / "readonly", root / "full"
    readonly.mkdir()
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)], check=True)
    yield {"readonly": readonly, "full": full}
    for folder in (readonly, full):
        subprocess.run(["umount", str(folder)], check=False)


LOCATION_CASES = {
    "models folder read-only": (lambda m, t: ["--models-dir", str(m["readonly"] / "models")], "read-only file system"),
    "models folder full": (lambda m, t: ["--models-dir", str(m["full"])], "MiB free"),
    "models folder is a file": (lambda m, t: ["--models-dir", str(REPO_ROOT / "README.md")], "is a file"),
    "store on a read-only disk": (lambda m, t: ["--tracking-uri", f"sqlite:///{m['readonly'] / 'mlflow.db'}"],
                                  "read-only file system"),
    "store on a full disk": (lambda m, t: ["--tracking-uri", f"sqlite:///{m['full'] / 'mlflow.db'}"], "MiB free"),
    "store is a folder": (lambda m, t: ["--tracking-uri", f"sqlite:///{t}"], "is a folder"),
}


@pytest.mark.parametrize("case", sorted(LOCATION_CASES))
def test_unusable_location_is_one_line_before_anything_starts(case, mounts, tmp_path, store, capsys):
    make, needle = LOCATION_CASES[case]
    argv = [*(a for role, path in BASE.items() for a in (f"--{role}", str(path))), "--models-dir", str(tmp_path / "m")]
    code, err = run_main(argv + make(mounts, tmp_path), capsys)
    assert_one_line(code, err, needle)
    assert all_runs(store) == []


def test_read_only_artifact_folder_is_one_line(mounts, tmp_path, mlflow_store, capsys):
    MlflowClient(tracking_uri=mlflow_store).create_experiment("grid3_small", artifact_location=str(mounts["readonly"] / "a"))
    argv = [*(a for role, path in BASE.items() for a in (f"--{role}", str(path))), "--models-dir", str(tmp_path / "m")]
    code, err = run_main(argv, capsys)
    assert_one_line(code, err, "artifact folder")
    assert all_runs(mlflow_store) == []
    assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize("script, argv, needle", [
    ("rl/local/train.py", ["--timesteps", "x"], "--timesteps"),
    ("rl/server/train.py", ["--scenarios", "/nonexistent.yaml"], "/nonexistent.yaml"),
    ("rl/evaluate.py", ["--network", str(BASE["network"]), "--scenarios", str(BASE["scenarios"]),
                        "--output-dir", str(REPO_ROOT / "README.md")], "is a file"),
    ("src/cli.py", ["--grid_dimension", "3", "--num_vehicles", "10", "--end-time", "60",
                    "--output-dir", str(REPO_ROOT / "README.md")], "is a file"),
])
def test_scripts_exit_with_one_line(script, argv, needle, tmp_path, mlflow_store):
    command = [python(), "-m", "src.cli", *argv] if script == "src/cli.py" else [python(), str(REPO_ROOT / script), *argv]
    proc = subprocess.run(command, cwd=tmp_path if script != "src/cli.py" else REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env=subprocess_env(MLFLOW_TRACKING_URI=mlflow_store))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert all_runs(mlflow_store) == []
