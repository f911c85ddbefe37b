"""The Deployment file ``conveyor tune -o FILE`` writes: a new one with the winning setting, or an existing
one with only the tuned fields changed (replicas, batching.maxBatchSize and maxQueueDelayMicroseconds,
resources.threads, and placement where the measured one differs); the rest of the file is kept."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import InvalidInput
from conveyor.files import replacing
from conveyor.registry.refs import parse_ref
from conveyor.settings import Settings
from conveyor.spec.loader import load_documents
from conveyor.spec.resources import API_VERSION, Deployment, name_problem
from conveyor.tune.search import Setting


@dataclass
class Target:
    """Where the winner goes: the file, and the Deployment already in it (None: a new file)."""

    path: Path
    documents: list[Any] = field(default_factory=list)  # every document of the file, as read
    index: int | None = None  # which of them is the Deployment tuned
    deployment: Deployment | None = None


def read_target(path: Path, model: str, settings: Settings) -> Target:
    """``path`` as ``-o`` names it: absent (a new file), or a valid spec file with one Deployment of
    ``model``; InvalidInput before any trial runs otherwise."""
    if not path.exists():
        return Target(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    resources = load_documents(text, source=str(path), max_depth=settings.max_json_depth)
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    mine = [
        i
        for i, (doc, res) in enumerate(zip(documents, resources, strict=True))
        if isinstance(res, Deployment) and parse_ref(res.spec.model).name == model
    ]
    if len(mine) != 1:
        what = "no Deployment" if not mine else f"{len(mine)} Deployments"
        raise InvalidInput(f"{path} holds {what} of model {model!r}: -o needs exactly one, or a new file")
    deployment = resources[mine[0]]
    assert isinstance(deployment, Deployment)
    return Target(path, documents, mine[0], deployment)


def baseline_of(target: Target | None, settings: Settings) -> Setting:
    """What the file deploys now (its fields, the server's defaults for those it leaves out), or the
    defaults of ``conveyor serve`` for a new file: the first row, the one to beat."""
    defaults = Setting(settings.intra_op_threads, 1, settings.max_batch_size, settings.max_queue_delay_us)
    if target is None or target.deployment is None:
        return defaults
    spec = target.deployment.spec
    batching = spec.batching.resolve(settings)
    replicas = spec.replicas if spec.autoscaling is None else spec.autoscaling.min_replicas
    return Setting(
        threads=_or(spec.resources.resolve(settings).threads, defaults.threads),
        replicas=max(1, replicas or 1),  # scaled to zero: one serves the load
        max_batch_size=_or(batching.max_batch_size, defaults.max_batch_size),
        max_queue_delay_us=_or(batching.max_queue_delay_microseconds, defaults.max_queue_delay_us),
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def placement_of(target: Target | None, asked: str | None) -> str:
    """Where trials run: as asked; else as the file places the deployment (a response cache runs only in
    replica processes); else ``auto``, as ``conveyor serve``: in-process for one replica."""
    if asked is not None:
        if asked not in ("auto", "inprocess", "process"):
            raise InvalidInput(f"--placement must be auto, inprocess or process, got {asked!r}")
        spec = target.deployment.spec if target is not None and target.deployment is not None else None
        if asked != "process" and spec is not None and spec.cache is not None and spec.cache.enabled:
            assert target is not None
            raise InvalidInput(
                f"{target.path} has a response cache, which runs in replica processes: "
                "use --placement process"
            )
        return asked
    if target is None or target.deployment is None:
        return "auto"
    spec = target.deployment.spec
    if spec.cache is not None and spec.cache.enabled:
        return "process"
    return spec.placement


def measured_placement(placement: str, replicas: int) -> str:
    """Where a trial's replicas ran (``conveyor serve``'s rule for auto)."""
    if placement == "auto":
        return "inprocess" if replicas == 1 else "process"
    return placement


def write(target: Target, model_ref: str, winner: Setting, placement: str) -> list[str]:
    """Write the winner into ``target``; notes on what changed beyond the tuned fields."""
    notes: list[str] = []
    where = measured_placement(placement, winner.replicas)
    if target.deployment is None or target.index is None:
        name = _dns_name(parse_ref(model_ref).name)
        spec: dict[str, Any] = {"model": model_ref, "replicas": winner.replicas}
        if where == "inprocess":
            spec["placement"] = "inprocess"
        spec["batching"] = {
            "maxBatchSize": winner.max_batch_size,
            "maxQueueDelayMicroseconds": winner.max_queue_delay_us,
        }
        spec["resources"] = {"threads": winner.threads}
        documents: list[Any] = [
            {"apiVersion": API_VERSION, "kind": "Deployment", "metadata": {"name": name}, "spec": spec}
        ]
        index = 0
    else:
        documents, index = target.documents, target.index
        spec = documents[index]["spec"]
        if spec.pop("autoscaling", None) is not None:
            notes.append(f"autoscaling replaced by replicas: {winner.replicas} (tune measures a fixed count)")
        spec["replicas"] = winner.replicas
        before = spec.get("placement", "auto")
        if where == "inprocess" and before != "inprocess":
            spec["placement"] = "inprocess"
            notes.append(f"placement: {before} -> inprocess (one replica was measured inside the gateway)")
        elif where == "process" and before == "inprocess":
            spec["placement"] = "process"
            notes.append("placement: inprocess -> process (the winner runs several replica processes)")
        batching = spec.get("batching") or {}
        batching["maxBatchSize"] = winner.max_batch_size
        batching["maxQueueDelayMicroseconds"] = winner.max_queue_delay_us
        spec["batching"] = batching
        resources = spec.get("resources") or {}
        resources["threads"] = winner.threads
        spec["resources"] = resources
    text = yaml.safe_dump_all(
        documents, sort_keys=False, explicit_start=len(documents) > 1, allow_unicode=True
    )
    load_documents(text, source=str(target.path))  # what is written is a file apply accepts
    with replacing(target.path, str(target.path)) as f:
        f.write(text.encode())
    return notes


def _dns_name(name: str) -> str:
    """A model name as a Deployment name (a DNS label): lowercase, other characters as '-'."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "model"
    if name_problem(label) is not None:
        raise InvalidInput(
            f"cannot name a Deployment after model {name!r}: write a Deployment file and give it with -o"
        )
    return label
