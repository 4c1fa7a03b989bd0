"""Chains of training batches in the model registry: which version a batch resumes from.

Every run and registered version of one chain carries the tags `chain_id` and
`batch_index`; versions also `steps`, `start_steps`, `batch_target_steps`, `interrupted`
and `parent_version`. The alias `chain-<id>` follows the chain's newest complete version,
so the UI shows a chain without hand-made columns and a chain never resumes from
`latest` (whatever anyone registered last).

A batch of a chain (`--chain-id ID --batch-index K`) resumes, in this order of preference:
its own interrupted version (a requeued batch finishes its remaining steps), or the newest
complete version of batch K-1. A batch whose complete version exists is not trained again.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, List, Optional

#: Version tags written by `version_tags`; the values are strings (MLflow tags).
CHAIN_TAG, BATCH_INDEX_TAG, INTERRUPTED_TAG = "chain_id", "batch_index", "interrupted"


class LineageError(ValueError):
    """A chain that cannot be continued as asked (one-line message)."""


def new_chain_id(model_name: str) -> str:
    return f"{model_name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def chain_alias(chain_id: str) -> str:
    """The registry alias of a chain's newest complete version (letters, digits, `_`, `-`)."""
    return "chain-" + re.sub(r"[^A-Za-z0-9_-]", "_", chain_id)[:200]


@dataclass
class BatchPlan:
    """Where a batch of a chain starts: a model version to resume (or none) and its step target."""

    chain_id: str
    batch_index: int
    resume_uri: Optional[str] = None
    parent_version: Optional[str] = None
    target_steps: Optional[int] = None  # set when finishing an interrupted attempt of this batch
    complete_version: Optional[str] = None  # this batch already finished: nothing to do


def _versions(client: Any, model_name: str, chain_id: str) -> List[Any]:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{model_name}'")
    except MlflowException:
        return []
    return sorted((v for v in found if v.tags.get(CHAIN_TAG) == chain_id), key=lambda v: int(v.version))


def plan_chain_batch(client: Any, model_name: str, chain_id: str, batch_index: int,
                     explicit_resume: Optional[str]) -> BatchPlan:
    """The start of batch `batch_index` of chain `chain_id` of registered model `model_name`."""
    plan = BatchPlan(chain_id, int(batch_index))
    versions = _versions(client, model_name, chain_id)
    own = [v for v in versions if v.tags.get(BATCH_INDEX_TAG) == str(batch_index)]
    if own:
        newest = own[-1]
        if newest.tags.get(INTERRUPTED_TAG) == "false":
            plan.complete_version = str(newest.version)
            return plan
        plan.resume_uri = f"models:/{model_name}/{newest.version}"
        plan.parent_version = str(newest.version)
        target = newest.tags.get("batch_target_steps")
        plan.target_steps = int(target) if target and target.isdigit() else None
        return plan
    if explicit_resume:
        plan.resume_uri = explicit_resume
        return plan
    if batch_index > 0:
        previous = [v for v in versions if v.tags.get(BATCH_INDEX_TAG) == str(batch_index - 1)
                    and v.tags.get(INTERRUPTED_TAG) == "false"]
        if not previous:
            raise LineageError(f"chain {chain_id!r}: batch {batch_index - 1} has no complete version of model "
                               f"{model_name!r} to resume from (did it fail, or is --chain-id/--batch-index wrong?)")
        plan.resume_uri = f"models:/{model_name}/{previous[-1].version}"
        plan.parent_version = str(previous[-1].version)
    return plan


def version_tags(chain_id: str, batch_index: int, batch: str, steps: int, start_steps: int, target_steps: int,
                 interrupted: bool, parent_version: Optional[str], failure: Optional[str] = None) -> dict:
    tags = {
        CHAIN_TAG: chain_id, BATCH_INDEX_TAG: str(batch_index), "batch": batch, "steps": str(steps),
        "start_steps": str(start_steps), "batch_target_steps": str(target_steps),
        INTERRUPTED_TAG: "true" if interrupted else "false", "parent_version": parent_version or "",
    }
    if failure:
        tags["failure"] = failure[:4000]
    return tags
