"""What a run trained on, as MLflow dataset inputs: the run page's "Datasets used" and the runs
table's Dataset column list the scenario list and every recorded route file, with digests.

They sit next to the JSON records (`config/scenarios.yaml`, `route_files/<scenario>.json`);
a dataset input is MLflow's own way to say "this run used these data", so runs that trained
on the same files can be found by digest. Records are plain dicts (the journal's JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

#: Input tag MLflow reads as a dataset's role in the run.
CONTEXT_TAG = "mlflow.data.context"
ENTITY_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")
#: Calls of `log_inputs` when concurrent runs race to insert the same dataset (see `log_dataset_inputs`).
DATASET_RACE_ATTEMPTS = 3


def scenario_list_dataset(scenarios: Sequence[Mapping[str, Any]], scenarios_file: Optional[str],
                          context: str = "training") -> Dict[str, Any]:
    """The scenario list as a table (one row per scenario, its keys as columns; the digest is
    MLflow's digest of that table), named after the scenarios file."""
    import mlflow.data
    import pandas as pd

    # text columns: a scenario's values are settings, not numbers to validate
    rows = [{key: json.dumps(value) if isinstance(value, (list, dict)) else str(value) for key, value in s.items()}
            for s in scenarios]
    name = Path(scenarios_file).stem if scenarios_file else "scenarios"
    source = _local_source(Path(scenarios_file)) if scenarios_file else name
    dataset = mlflow.data.from_pandas(pd.DataFrame(rows), source=source, name=name)
    return {**dataset.to_dict(), "tags": {CONTEXT_TAG: context}}


def route_file_datasets(route_records: Mapping[str, Sequence[Mapping[str, Any]]],
                        context: str = "training") -> List[Dict[str, Any]]:
    """Each route file of each recorded-demand scenario: named `<scenario>/<file>`, digest the
    start of its sha256 (the full one is in `route_files/<scenario>.json`), source its path."""
    from mlflow.data.meta_dataset import MetaDataset

    found = []
    for scenario, records in route_records.items():
        for record in records:
            dataset = MetaDataset(_local_source(Path(record["path"])),
                                  name=f"{scenario}/{Path(record['path']).name}", digest=record["sha256"][:12])
            found.append({**dataset.to_dict(), "tags": {CONTEXT_TAG: context, "scenario": scenario,
                                                        "vehicles": str(record.get("vehicles"))}})
    return found


def _local_source(path: Path) -> Any:
    """MLflow's source for a local file (it warns that two of its own classes could read a
    local path, and picks the same one either way)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(path.resolve()))


def log_dataset_inputs(client: Any, run_id: str, datasets: Sequence[Mapping[str, Any]]) -> None:
    """Log `datasets` as the run's inputs. Runs starting together in one experiment (a job
    array, a sweep's workers) race to insert the same dataset, and the server refuses the
    second insert; once the first is in, the same call links to it, so it is made again."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    inputs = [DatasetInput(Dataset(**{k: d.get(k) for k in ENTITY_FIELDS}),
                           tags=[InputTag(k, str(v)) for k, v in d.get("tags", {}).items()]) for d in datasets]
    for attempt in range(DATASET_RACE_ATTEMPTS):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if attempt + 1 == DATASET_RACE_ATTEMPTS or not _lost_insert_race(err):
                raise


def _lost_insert_race(err: Exception) -> bool:
    """A unique-key violation from the server's database (SQLite, PostgreSQL or MySQL wording)."""
    text = str(err).lower()
    return any(sign in text for sign in ("unique constraint", "duplicate key", "duplicate entry", "integrityerror"))
