"""Reading an experiment: five YAML files (or one monolithic file with `base_config`) plus
command-line overrides -> a validated `ExperimentConfig`; and writing one back.

Precedence: command-line overrides > execution > algorithm > defaults (only `n_steps`,
`batch_size`, `n_epochs` and `seed` may be in both algorithm and execution). Each key's
value is checked where it was written, so an error names that file (see `schema.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from src.rl import constants as C
from src.rl.config import schema as S
from src.rl.config.experiment import ExperimentConfig, check_combination
from src.rl.config.schema import ConfigError
from src.rl.config.yaml_format import dump_mapping, read_mapping
from src.validation import got, suggest

PathLike = Union[str, Path]


def _resolve_net_file(value: Any, base_dir: Path) -> Any:
    """A relative `net_file` is relative to the YAML file that sets it."""
    if isinstance(value, str) and value.strip() and not Path(value).is_absolute():
        return str((base_dir / value).resolve())
    return value


def _apply_overrides(values: Dict[str, Any], origins: Dict[str, str], overrides: Optional[Mapping[str, Any]]) -> None:
    """Command-line values win over every file; a None value means 'not given'."""
    source = "command-line overrides"
    if not overrides:
        return
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values, {got(overrides)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    allowed = S.EXPERIMENT_FILE_KEYS - S.SCENARIOS_FILE_KEYS
    for key in given:
        if key in allowed:
            continue
        if key == "scenarios" or key in S.SCENARIO_KEYS:
            raise ConfigError(f"{source}: key {key!r} cannot be overridden; scenarios come from the scenarios file")
        raise ConfigError(f"{source}: unknown key {key!r}{suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")
    for key, value in given.items():
        values[key] = S.check_value(key, value, source)
        origins[key] = source


def _finish(values: Dict[str, Any], scenarios: Any, scenario_source: str, origins: Dict[str, str],
            source_files: Dict[str, str], scenario_dir: Path) -> ExperimentConfig:
    """`scenario_dir`: the folder of the file that holds the scenarios (route_files are relative to it)."""
    origins = dict(origins, scenarios=scenario_source)
    if values.get("control_mode") == "phase_select" and "reward_function" not in origins:
        values["reward_function"] = C.DEFAULT_PHASE_SELECT_REWARD  # the cycle default is not defined per junction
    checked = S.check_scenarios(scenarios, scenario_source, scenario_dir)
    config = ExperimentConfig(**values, scenarios=checked, source_files=source_files, key_sources=origins)
    check_combination(config)  # each key was checked where it was read
    return config


def load_modular_config(
    network: PathLike,
    scenarios: PathLike,
    algorithm: PathLike,
    reward: PathLike,
    execution: PathLike,
    overrides: Optional[Mapping[str, Any]] = None,
) -> ExperimentConfig:
    """Read the five files into one validated config (overrides > execution > algorithm > defaults).

    `overrides` are command-line values for any non-scenario key; keys whose value is None
    are ignored. Raises `ConfigError` (one line: file, key, what is allowed) on any problem.
    """
    paths = {"network": network, "scenarios": scenarios, "algorithm": algorithm, "reward": reward, "execution": execution}
    data: Dict[str, Dict[str, Any]] = {}
    for group, path in paths.items():
        if path is None:
            raise ConfigError(f"no {group} file given; all five files (network, scenarios, algorithm, reward, execution) are needed")
        data[group] = read_mapping(path, group)
        S.check_keys(data[group], S.GROUP_KEYS[group], f"{group} file {path}", f"the {group} file")

    values: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    for group in ("network", "algorithm", "reward", "execution"):  # later groups win
        source = f"{group} file {paths[group]}"
        for key, value in data[group].items():
            if key == "net_file":
                value = _resolve_net_file(value, Path(paths[group]).parent)
            values[key] = S.check_value(key, value, source)
            origins[key] = source
    _apply_overrides(values, origins, overrides)
    if "scenarios" not in data["scenarios"]:
        raise ConfigError(f"scenarios file {paths['scenarios']}: key 'scenarios' is missing; a scenarios file holds "
                          "'scenarios: [{name: ..., num_vehicles: ...}, ...]'")
    source_files = {group: str(path) for group, path in paths.items()}
    return _finish(values, data["scenarios"]["scenarios"], f"scenarios file {paths['scenarios']}", origins, source_files,
                   Path(paths["scenarios"]).parent)


def _load_chain(path: Path, chain: Tuple[Path, ...]) -> Tuple[Dict[str, Any], Dict[str, str], List[Path]]:
    """Merged keys of `path` and its base_config ancestors, which file set each, and the files read."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in chain + (resolved,))
        raise ConfigError(f"experiment file {chain[-1]}: key 'base_config': inheritance cycle {cycle}")
    data = read_mapping(path, "experiment")
    source = f"experiment file {path}"
    S.check_keys(data, S.EXPERIMENT_FILE_KEYS | {S.BASE_CONFIG_KEY}, source, "an experiment file")
    merged: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    files: List[Path] = [path]
    base = data.pop(S.BASE_CONFIG_KEY, None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{source}: key 'base_config': expected a path to another experiment file, {got(base)}")
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{source}: key 'base_config': file {base_path} does not exist "
                              "(a relative path is relative to this file)")
        merged, origins, base_files = _load_chain(base_path, chain + (resolved,))
        files += base_files
    for key, value in data.items():
        if key == "net_file":
            value = _resolve_net_file(value, path.parent)
        merged[key] = value if key == "scenarios" else S.check_value(key, value, source)
        origins[key] = source
    return merged, origins, files


def load_experiment(path: PathLike, overrides: Optional[Mapping[str, Any]] = None) -> ExperimentConfig:
    """Read a monolithic experiment file (every group's keys at top level, plus `scenarios`).

    `base_config: other.yaml` (relative to the file) is read first and the file's own keys
    replace its keys whole (a child's `scenarios` or `reward_params` replaces the base's).
    Works for the snapshots `save_experiment` writes.
    """
    path = Path(path)
    merged, origins, files = _load_chain(path, ())
    scenario_source = origins.pop("scenarios", f"experiment file {path}")
    scenario_dir = Path(scenario_source.split("experiment file ", 1)[-1]).parent
    scenarios = merged.pop("scenarios", None)
    if scenarios is None:
        raise ConfigError(f"experiment file {path}: key 'scenarios' is missing (also in its base_config files); "
                          "give 'scenarios: [{name: ..., num_vehicles: ...}, ...]'")
    _apply_overrides(merged, origins, overrides)
    source_files = {"experiment": str(path)}
    source_files.update({f"base_config_{i}": str(p) for i, p in enumerate(files[1:], start=1)})
    return _finish(merged, scenarios, scenario_source, origins, source_files, scenario_dir)


def save_experiment(config: ExperimentConfig, path: PathLike) -> Path:
    """Write the resolved config as one experiment file that `load_experiment` reads back equal."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Resolved experiment configuration (all five groups merged; load with",
        "# src.rl.config.load_experiment). Source files:",
    ]
    lines += [f"#   {group}: {source}" for group, source in config.source_files.items()] or ["#   (none)"]
    for group, values in config.to_grouped_dict().items():
        lines.append("")
        lines.append(f"# --- {group} ---")
        lines.append(dump_mapping(values).rstrip("\n"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
