"""Saving a policy together with what is needed to run it again.

A saved model zip carries `traffic_rl_metadata.json` beside SB3's own files: the feature
lists, cycle timing, signal IDs and space sizes it was trained with. `RLController` and
resumed training read it, so a model needs no other flag to be evaluated, and a model for
another network is refused with a clear message.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping

METADATA_NAME = "traffic_rl_metadata.json"


class IncompatibleModelError(ValueError):
    """A saved policy does not fit the network or features it is asked to run on."""


def write_model_metadata(model_zip: Path, metadata: Mapping[str, Any]) -> None:
    """Add (or replace) the metadata file inside an SB3 model zip."""
    model_zip = Path(model_zip)
    with zipfile.ZipFile(model_zip, "r") as archive:
        if METADATA_NAME in archive.namelist():
            items = {n: archive.read(n) for n in archive.namelist() if n != METADATA_NAME}
        else:
            items = None
    if items is not None:  # zip files cannot drop a member in place: rewrite
        with zipfile.ZipFile(model_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in items.items():
                archive.writestr(name, data)
    with zipfile.ZipFile(model_zip, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(dict(metadata), indent=1, sort_keys=True))


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


def check_compatible(metadata: Mapping[str, Any], observation_size: int, action_size: int, where: str) -> None:
    """Refuse a model whose spaces do not match the network it should control."""
    expected_obs = metadata.get("observation_size")
    expected_act = metadata.get("action_size")
    if expected_obs is not None and (int(expected_obs) != observation_size or int(expected_act) != action_size):
        raise IncompatibleModelError(
            f"{where}: the model was trained for observation size {expected_obs} and action size "
            f"{expected_act}, but this network gives {observation_size} and {action_size} "
            f"(signals {metadata.get('signals')} vs another network or feature list); train a new model "
            "or use the network the model was trained on"
        )
