"""What the edge routes do (docs/edge.md): the version an edge node should serve, as one document with its
ETag; each node's standing (behind or not, for how long); a Range of an artifact.

An edge node follows its deployment's current revision; while a rollout runs, it stays on the rollout's
stable version and moves once the rollout promotes (a canary's traffic split has no meaning on a node that
serves alone). A rollback is a new revision like any other: the edge nodes follow it the same way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from conveyor import errors
from conveyor.control.signed_models import SignedModels
from conveyor.registry import Registry
from conveyor.registry.edges import EdgeInfo
from conveyor.spec.resources import DeploymentSpec

ARTIFACT_PATH = "/api/v1/artifacts/{model}/{version}"
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True, slots=True)
class Desired:
    doc: dict[str, Any]
    etag: str  # quoted, as in the header
    since: datetime  # when the deployment last changed (its current revision)


def followed_labels(spec: dict[str, Any]) -> dict[str, str]:
    """The labels an edge node needs to follow a deployment of canonical ``spec`` (none: any node)."""
    edges = (spec.get("spec") or {}).get("edges") or {}
    labels = edges.get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def desired_for(registry: Registry, signed: SignedModels, edge: EdgeInfo) -> Desired:
    """The version ``edge`` should serve now. NotFound while its deployment does not exist; Conflict when
    the node's labels do not match what the deployment says may follow it."""
    info = registry.deployments.get(edge.deployment)
    wanted = followed_labels(info.spec)
    missing = {k: v for k, v in wanted.items() if edge.labels.get(k) != v}
    if missing:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
        raise errors.Conflict(
            f"edge node {edge.name!r} does not follow deployment {info.name!r}: it lacks the label(s) "
            f"{shown} that the deployment's spec.edges.labels asks"
        )
    model = info.model
    rollout = registry.rollouts.active(info.name)
    if rollout is not None and rollout.stable_model:
        model = rollout.stable_model
    if not model:
        raise errors.NotFound(f"deployment {info.name!r} runs no model version yet")
    name, _, number = model.rpartition(":")
    version = registry.get_version(name, int(number))
    spec = DeploymentSpec.model_validate(info.spec["spec"])
    signatures = [
        {"keyId": s.key_id, "signature": s.signature}
        for s in registry.signatures.of_version(name, version.version)
    ]
    doc = {
        "deployment": info.name,
        "revision": info.revision,
        "model": name,
        "version": str(version.version),
        "sha256": version.sha256,
        "size": version.size_bytes,
        "artifact": ARTIFACT_PATH.format(model=name, version=version.version),
        "requireSignedModels": signed.required(spec),
        "signatures": signatures,
        "rollout": None
        if rollout is None
        else {"number": rollout.number, "candidate": rollout.candidate_model},
    }
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return Desired(doc, f'"{digest}"', info.updated_at)


def edge_rows(registry: Registry, signed: SignedModels, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every edge node with what it should serve (``desired``), whether it is ``behind`` and since how long
    (``lagSeconds``: from the deployment's change, or the node's registration if later), and how long ago
    it was heard from (``seenSecondsAgo``)."""
    now = now or datetime.now(UTC)
    rows = []
    for edge in registry.edges.list():
        row = {**edge.to_dict(), "desired": None, "behind": None, "lagSeconds": None, "followProblem": None}
        try:
            desired = desired_for(registry, signed, edge)
        except (errors.NotFound, errors.Conflict) as exc:
            row["followProblem"] = exc.message
        else:
            row["desired"] = desired.doc["version"]
            behind = edge.version != desired.doc["version"]
            row["behind"] = behind
            if behind:
                since = max(desired.since, edge.registered_at)
                row["lagSeconds"] = round(max(0.0, (now - since).total_seconds()), 1)
            else:
                row["lagSeconds"] = 0.0
        row["seenSecondsAgo"] = round(max(0.0, (now - edge.last_seen).total_seconds()), 1)
        rows.append(row)
    return rows


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end exclusive) of a ``Range: bytes=START-[END]`` header within ``size`` bytes; None for
    no header or a form this server does not serve (several ranges, suffix ranges: the whole file goes).
    InvalidInput subclass ``RangeNotSatisfiable`` when START is at or past the end."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    start = int(match.group(1))
    end = int(match.group(2)) + 1 if match.group(2) else size
    if start >= size or end <= start:
        raise RangeNotSatisfiable(f"range {header!r} is outside the artifact's {size} bytes")
    return start, min(end, size)


class RangeNotSatisfiable(errors.InvalidInput):
    """A Range starting at or past the end (HTTP 416)."""
