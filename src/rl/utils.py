"""Saving a policy together with what is needed to run it again.

A saved model zip carries `traffic_rl_metadata.json` beside SB3's own files: the feature
lists, cycle timing, signal IDs and space sizes it was trained with. `RLController` and
resumed training read it, so a model needs no other flag to be evaluated, and a model for
another network is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from src.rl.normalization import NORMALIZATION_NAME, normalization_state, read_normalization

METADATA_NAME = "traffic_rl_metadata.json"


class IncompatibleModelError(ValueError):
    """A saved policy does not fit the network or features it is asked to run on."""


def write_zip_member(model_zip: Path, name: str, text: str) -> None:
    """Add (or replace) one text member inside an SB3 model zip."""
    model_zip = Path(model_zip)
    with zipfile.ZipFile(model_zip, "r") as archive:
        if name in archive.namelist():
            items = {n: archive.read(n) for n in archive.namelist() if n != name}
        else:
            items = None
    if items is not None:  # zip files cannot drop a member in place: rewrite
        with zipfile.ZipFile(model_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in items.items():
                archive.writestr(member, data)
    with zipfile.ZipFile(model_zip, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)


def write_model_metadata(model_zip: Path, metadata: Mapping[str, Any]) -> None:
    """Add (or replace) the metadata file inside an SB3 model zip."""
    write_zip_member(model_zip, METADATA_NAME, json.dumps(dict(metadata), indent=1, sort_keys=True))


def read_model_metadata(model_zip: Path) -> Dict[str, Any]:
    model_zip = Path(model_zip)
    if not model_zip.is_file():
        raise FileNotFoundError(f"model file {model_zip} does not exist")
    try:
        with zipfile.ZipFile(model_zip) as archive:
            if METADATA_NAME not in archive.namelist():
                return {}
            return json.loads(archive.read(METADATA_NAME))
    except zipfile.BadZipFile:
        raise IncompatibleModelError(f"{model_zip} is not a saved model (not a zip file)") from None


def control_of(metadata: Mapping[str, Any]) -> Dict[str, str]:
    """How a model acts: control mode and policy sharing (models from before both: cycle_splits, network)."""
    mode = str(metadata.get("control_mode") or "cycle_splits")
    return {"control_mode": mode, "policy_sharing": str(metadata.get("policy_sharing") or "network")}


def check_phase_structure(metadata: Mapping[str, Any], phase_counts: Mapping[str, int], where: str) -> None:
    """Refuse a network-wide model on a network whose signals or phases per signal differ from
    those it was trained on (the same sizes can hide another structure). Junction-shared
    models act per junction and only need the same most phases per junction (their sizes)."""
    trained = metadata.get("phase_counts")
    if not trained or control_of(metadata)["policy_sharing"] == "junction":
        return
    trained = {str(k): int(v) for k, v in trained.items()}
    here = {str(k): int(v) for k, v in phase_counts.items()}
    if trained == here:
        return
    missing = sorted(set(trained) - set(here))
    extra = sorted(set(here) - set(trained))
    differ = sorted(t for t in set(trained) & set(here) if trained[t] != here[t])
    detail = (f"signal {differ[0]} has {here[differ[0]]} phases here, {trained[differ[0]]} in training" if differ else
              f"signals {', '.join((missing or extra)[:3])} {'missing here' if missing else 'not in training'}")
    raise IncompatibleModelError(f"{where}: the network's phase structure differs from the model's ({detail}); "
                                 "train a new model or use the network it was trained on")


def check_compatible(metadata: Mapping[str, Any], observation_size: int, action_size: int, where: str,
                     control: Optional[Mapping[str, str]] = None,
                     phase_counts: Optional[Mapping[str, int]] = None) -> None:
    """Refuse a model whose spaces (or, when given: control mode and policy sharing, the phases
    of every signal) do not match the network and config it should run with. Sizes are
    checked before the phase structure: a wrong size is the plainer message."""
    if control is not None:
        have = control_of(metadata)
        for key in ("control_mode", "policy_sharing"):
            if have[key] != control[key]:
                raise IncompatibleModelError(
                    f"{where}: the model was trained with {key} {have[key]}, the config asks for {control[key]}; "
                    "set it back or train a new model")
    expected_obs = metadata.get("observation_size")
    expected_act = metadata.get("action_size")
    if expected_obs is not None and (int(expected_obs) != observation_size or int(expected_act) != action_size):
        raise IncompatibleModelError(
            f"{where}: the model was trained for observation size {expected_obs} and action size "
            f"{expected_act}, but this network gives {observation_size} and {action_size} "
            f"(signals {metadata.get('signals')} vs another network or feature list); train a new model "
            "or use the network the model was trained on"
        )
    if phase_counts is not None:
        check_phase_structure(metadata, phase_counts, where)


def save_model_atomically(model: Any, path: Path, metadata: Mapping[str, Any]) -> Path:
    """Save an SB3 model with its metadata (and normalisation statistics) under `path`, or leave nothing there.

    The zip is written to a hidden temporary name in the same folder and renamed at the end,
    so a full disk or a kill mid-write never leaves a corrupt model under its normal name.
    When the model's env is a `VecNormalize`, its statistics go into the same zip, so every
    checkpoint, final and best model carries the statistics it was trained with.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}.zip")
    try:
        model.save(str(partial))
        write_model_metadata(partial, metadata)
        vec_normalize = model.get_vec_normalize_env() if hasattr(model, "get_vec_normalize_env") else None
        if vec_normalize is not None:
            write_zip_member(partial, NORMALIZATION_NAME, json.dumps(normalization_state(vec_normalize)))
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path


def policy_space_size(space: Any) -> int:
    """Size of an observation/action space as the metadata records it (a Discrete: its choices)."""
    if hasattr(space, "n") and not getattr(space, "shape", None):
        return int(space.n)
    return int(space.shape[0]) if getattr(space, "shape", None) else 0


def load_checked_model(path: Path, observation_size: int, action_size: int, where: str,
                       policy_kwargs: Optional[Mapping[str, Any]] = None,
                       normalize_observations: Optional[bool] = None,
                       control: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Load the whole model at `path` and check it fits; IncompatibleModelError (one line) if not.

    Done before a run starts, so a zip with only metadata, a corrupt `policy.pth` or an SB3
    model of another network never gets as far as an MLflow run or a model folder.
    `policy_kwargs` (net_arch, activation_fn) must match: they cannot change on resume; so
    must `normalize_observations` (when given) with the statistics saved in the zip.
    Returns the model's metadata.
    """
    from stable_baselines3 import PPO

    metadata = read_model_metadata(Path(path))
    check_compatible(metadata, observation_size, action_size, where, control)
    try:
        model = PPO.load(str(path), device="cpu")
    except Exception as err:  # SB3 raises many kinds for a broken zip; all mean "not a usable model"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IncompatibleModelError(f"{where}: {path} is not a usable PPO model ({type(err).__name__}: {first[:200]})") from None
    obs_size, act_size = policy_space_size(model.observation_space), policy_space_size(model.action_space)
    if len(getattr(model.observation_space, "shape", ()) or ()) != 1 or (obs_size, act_size) != (observation_size, action_size):
        raise IncompatibleModelError(
            f"{where}: the model's observation/action shapes are ({obs_size},)/({act_size},), but this network gives "
            f"({observation_size},)/({action_size},); train a new model or use the network it was trained on")
    if policy_kwargs:
        for key in ("net_arch", "activation_fn"):
            have, want = model.policy_kwargs.get(key), policy_kwargs.get(key)
            if want is not None and have is not None and have != want:
                name = getattr(have, "__name__", have), getattr(want, "__name__", want)
                raise IncompatibleModelError(
                    f"{where}: {key} cannot change when resuming (the model has {name[0]}, the config asks for "
                    f"{name[1]}); set it back in the algorithm file or start a new model")
    if normalize_observations is not None:
        check_normalization_matches(read_normalization(Path(path)), normalize_observations, where)
    return metadata


def check_normalization_matches(state: Optional[Mapping[str, Any]], normalize_observations: bool, where: str) -> None:
    """A policy cannot switch between raw and normalised observations when resumed."""
    saved = bool(state and state.get("normalize_observations"))
    if saved != bool(normalize_observations):
        raise IncompatibleModelError(
            f"{where}: normalize_observations cannot change when resuming (the model was trained with "
            f"{str(saved).lower()}, the config asks for {str(bool(normalize_observations)).lower()}); set it back in "
            "the algorithm file or start a new model")
