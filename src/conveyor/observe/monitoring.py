"""What a replica watches of one served version (drift, the inference log), from a monitoring document.

The document is decided where the deployment is known (the control plane from the spec and the version's
reference; ``conveyor serve`` from the version alone) and handed to the replica as a file (``--monitor``):
``{"drift": {"sampleEvery", "window", "reference"} | null, "inferenceLog": {"directory", "sampleEvery",
"maxBytes", "keep"} | null}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.formats.samples import Array
from conveyor.observe.drift import DriftMonitor, collector
from conveyor.observe.inference_log import InferenceLog
from conveyor.runtime.observer import RequestObserver

DRIFT_SAMPLE_EVERY = 10
DRIFT_WINDOW = 2000
LOG_SAMPLE_EVERY = 100
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3


class ModelMonitor(RequestObserver):
    """The drift monitor and inference log of one served version; ``observe`` is on the request path."""

    def __init__(self, drift: DriftMonitor | None, log: InferenceLog | None) -> None:
        self.drift = drift
        self.log = log
        if drift is not None:
            collector().add(drift)

    def observe(self, request_id: str, inputs: Mapping[str, Array], outputs: Mapping[str, Array]) -> None:
        if self.drift is not None:
            self.drift.observe(inputs)
        if self.log is not None:
            self.log.observe(request_id, inputs, outputs)

    def close(self) -> None:
        if self.drift is not None:
            collector().remove(self.drift)
        if self.log is not None:
            self.log.close()


def monitoring_document(
    reference: Mapping[str, Any] | None,
    *,
    drift: Mapping[str, Any] | None = None,
    inference_log: Mapping[str, Any] | None = None,
    log_directory: Path | None = None,
) -> dict[str, Any] | None:
    """The replica's document: drift when enabled (the default) and the version has a reference, the
    inference log when enabled (off by default). ``drift`` / ``inference_log`` are the spec's blocks
    (``enabled``, ``sampleEvery``, ``window`` / ``maxBytes``, ``keep``). None when nothing is watched."""
    drift = drift or {}
    inference_log = inference_log or {}
    doc: dict[str, Any] = {"drift": None, "inferenceLog": None}
    if drift.get("enabled", True) and reference is not None and reference.get("available"):
        doc["drift"] = {
            "sampleEvery": drift.get("sampleEvery", DRIFT_SAMPLE_EVERY),
            "window": drift.get("window", DRIFT_WINDOW),
            "reference": dict(reference),
        }
    if inference_log.get("enabled", False) and log_directory is not None:
        doc["inferenceLog"] = {
            "directory": str(log_directory),
            "sampleEvery": inference_log.get("sampleEvery", LOG_SAMPLE_EVERY),
            "maxBytes": inference_log.get("maxBytes", LOG_MAX_BYTES),
            "keep": inference_log.get("keep", LOG_KEEP),
        }
    return doc if doc["drift"] or doc["inferenceLog"] else None


def write_document(doc: Mapping[str, Any], directory: Path) -> tuple[Path, str]:
    """Write ``doc`` once under ``directory``, named by its digest; returns the file and the digest."""
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = directory / f"{digest}.json"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # a replica never reads half a document
    return path, digest


def read_document(path: str | Path) -> dict[str, Any]:
    """A monitoring document written by ``write_document``; ValueError / OSError when unreadable."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a monitoring document")
    return doc


def monitor_from(doc: Mapping[str, Any], model: str, version: str) -> ModelMonitor | None:
    """The monitor a replica attaches to the model it serves as ``model:version``."""
    drift = doc.get("drift")
    log = doc.get("inferenceLog")
    monitor = ModelMonitor(
        None
        if not drift
        else DriftMonitor(
            model,
            version,
            drift["reference"],
            sample_every=int(drift["sampleEvery"]),
            window=int(drift["window"]),
        ),
        None
        if not log
        else InferenceLog(
            Path(log["directory"]),
            model=model,
            version=version,
            sample_every=int(log["sampleEvery"]),
            max_bytes=int(log["maxBytes"]),
            keep=int(log["keep"]),
        ),
    )
    return monitor if monitor.drift or monitor.log else None
