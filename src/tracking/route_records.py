"""The recorded demand of a run in its MLflow record: which route files each scenario rotated,
with their checksums, and the files themselves when small, so the run can be repeated from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from src.traffic.route_files import route_file_record

#: Route files up to this size are logged whole; larger ones only by their record (path, sha256).
MAX_LOGGED_FILE_BYTES = 5 * 1024 * 1024


def log_route_files(run: Any, scenarios: Sequence[Mapping[str, Any]], out_dir: Path) -> Dict[str, List[Dict[str, Any]]]:
    """For each route-file scenario: `route_files/<scenario>.json` (a RouteFileRecord per file)
    and the files under `route_files/<scenario>/` (each under 5 MB). Returns the records."""
    logged: Dict[str, List[Dict[str, Any]]] = {}
    folder = Path(out_dir) / "route_files"
    for scenario in scenarios:
        files = scenario.get("route_files")
        if not files:
            continue
        name = str(scenario["name"])
        records = [route_file_record(f).as_dict() for f in files]
        for record in records:
            record["logged"] = record["size"] < MAX_LOGGED_FILE_BYTES
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"scenario": name, "route_order": scenario.get("route_order", "sequential"),
                                    "route_seed": scenario.get("route_seed", 0), "files": records}, indent=1))
        run.log_artifact(path, "route_files")
        for record in records:
            if record["logged"]:
                run.log_artifact(Path(record["path"]), f"route_files/{name}")
        logged[name] = records
    return logged
