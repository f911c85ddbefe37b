"""Desired state: each deployment's current revision, resolved to a model file and a replica template.

The template is a digest of everything a replica process is started with (model version and artifact,
batching, threads, limits): replicas of another template are replaced by a rolling update, replicas of the
same template are only added or removed (scaling).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import errors
from conveyor.control.autoscaler import AutoscalingPolicy, policy_from_spec
from conveyor.registry import Registry
from conveyor.registry.records import DeploymentInfo
from conveyor.routing_table import Hold
from conveyor.settings import Settings
from conveyor.spec import Deployment
from conveyor.spec.resources import DEFAULT_HOLD_TIMEOUT_SECONDS

log = logging.getLogger("conveyor.control")
MAX_HELD_REQUESTS = 1000


@dataclass(frozen=True, slots=True)
class Desired:
    """What one deployment should run now."""

    name: str
    revision: int
    model: str
    version: str
    model_file: Path
    template: str
    options: dict[str, Any]
    replicas: int | None
    """The fixed count, or None when the autoscaler decides."""
    policy: AutoscalingPolicy | None
    hold: Hold | None
    """The routing table's ``hold`` (scale to zero), or None."""


class DesiredLoader:
    """Reads deployments from the registry; artifact digests are verified once per process per blob."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings
        self._verified: dict[str, Path] = {}
        self.problems: dict[str, str] = {}
        """Deployments that cannot run (their model is gone...): name → why; reported once per change."""

    def load(self) -> dict[str, Desired]:
        """Every deployment that can run; one that cannot is skipped and its reason kept in ``problems``."""
        desired: dict[str, Desired] = {}
        problems: dict[str, str] = {}
        for info in self._registry.deployments.list():
            try:
                desired[info.name] = self._desired(info)
            except errors.ConveyorError as exc:
                problems[info.name] = exc.message
        self.problems = problems
        return desired

    def _desired(self, info: DeploymentInfo) -> Desired:
        doc = Deployment.model_validate(info.spec)
        spec = doc.spec
        if spec.target != "local":
            raise errors.InvalidInput(f"target {spec.target!r} is not supported by this control plane yet")
        ref = getattr(info, "model", None) or spec.model
        version = self._registry.resolve(ref)
        model_file = self._verified.get(version.sha256)
        if model_file is None:
            try:
                model_file = self._registry.artifact_path(version)  # verifies the digest
            except errors.ConveyorError as exc:
                raise type(exc)(f"model {version.ref}: {exc.message}") from None
            self._verified[version.sha256] = model_file
        batching = spec.batching.resolve(self._settings)
        options: dict[str, Any] = {
            "max_batch_size": batching.max_batch_size,
            "max_queue_delay_us": batching.max_queue_delay_microseconds,
            "max_queue_size": batching.max_queue_size,
            "request_timeout_ms": batching.request_timeout_milliseconds,
            "intra_op_threads": spec.resources.resolve(self._settings).threads,
            "max_body_bytes": self._settings.max_body_bytes,
            "max_elements": self._settings.max_elements,
        }
        identity = {"model": version.name, "version": version.version, "sha256": version.sha256, **options}
        template = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        policy = None if spec.autoscaling is None else policy_from_spec(spec.autoscaling)
        hold = None
        if spec.autoscaling is not None and spec.autoscaling.scale_to_zero:
            timeout = spec.autoscaling.hold_timeout_seconds or DEFAULT_HOLD_TIMEOUT_SECONDS  # set by the spec
            hold = Hold(float(timeout), MAX_HELD_REQUESTS)
        return Desired(
            name=info.name,
            revision=info.revision,
            model=version.name,
            version=str(version.version),
            model_file=model_file,
            template=template,
            options=options,
            replicas=spec.replicas,
            policy=policy,
            hold=hold,
        )
