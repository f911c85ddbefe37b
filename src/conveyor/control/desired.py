"""Desired state: each deployment's current revision, resolved to a model file and a replica template.

The template is a digest of everything a replica process is started with (model version and artifact,
batching, threads, limits): replicas of another template are replaced by a rolling update, replicas of the
same template are only added or removed (scaling).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conveyor import errors
from conveyor.control.autoscaler import AutoscalingPolicy, policy_from_spec
from conveyor.control.devices import device_choice
from conveyor.control.signed_models import SignedModels
from conveyor.protocol.table import STARTING, Hold, InProcessLoad
from conveyor.registry import Registry
from conveyor.registry.records import DeploymentInfo
from conveyor.runtime.providers import CPU, Choice, gpu_batching, probe_capabilities, replica_env
from conveyor.settings import Settings
from conveyor.spec import Deployment
from conveyor.spec.resources import DEFAULT_HOLD_TIMEOUT_SECONDS, DeploymentSpec
from conveyor.targets.ray import ray_problem

log = logging.getLogger("conveyor.control")
MAX_HELD_REQUESTS = 1000


def start_hold(settings: Settings) -> Hold:
    """The hold of a version whose first replicas are starting: its requests wait for one to get ready, as
    long as a replica may take to start but never past a request's own deadline (a replica that does not
    get ready in time is killed and replaced: the requests it held get a 503 saying so)."""
    timeout = min(settings.replica_start_timeout_s, settings.request_timeout_ms / 1000)
    return Hold(timeout, MAX_HELD_REQUESTS, STARTING)


@dataclass(frozen=True, slots=True)
class Desired:
    """What one deployment should run now."""

    name: str
    revision: int
    model: str
    version: str
    model_file: Path
    sha256: str
    """The artifact's digest: the replica verifies the bytes it loads against it (``--sha256``)."""
    template: str
    options: dict[str, Any]
    replicas: int | None
    """The fixed count, or None when the autoscaler decides."""
    policy: AutoscalingPolicy | None
    hold: Hold | None
    """The routing table's ``hold`` (scale to zero), or None."""
    inprocess: InProcessLoad | None = None
    """Placement inprocess: what each gateway loads (no replica process); None: replica processes."""
    public: bool = False
    """``public: true``: gateways answer without a token."""
    target: str = "local"
    """The spec's ``target``: the kind of target its replicas run on (targets/select.py)."""
    stable: Desired | None = None
    """During a rollout (docs/rollouts.md): the stable revision, whose replicas run beside this one's (the
    candidate's) and answer every request the rollout's split does not give the candidate."""
    device: Choice | None = None
    """With resources.gpu (docs/gpu.md): the device its replicas run on; None: the CPU, as always."""

    def device_env(self, used: Sequence[str], visible: str | None = None) -> dict[str, str]:
        """The environment of a new replica on a GPU: pinned to the GPU fewest of ``used`` (the
        CUDA_VISIBLE_DEVICES of this control plane's running replicas) hold, counted in ``visible`` (the
        control plane's own CUDA_VISIBLE_DEVICES). Nothing on the CPU."""
        if self.device is None or not self.device.is_gpu:
            return {}
        capabilities = probe_capabilities()  # asked at apply: cached
        gpus = range(capabilities.cuda_devices)
        slots = [replica_env(self.device, capabilities, i, visible) for i in gpus]
        return min(slots, key=lambda env: sum(u == env.get("CUDA_VISIBLE_DEVICES") for u in used), default={})

    def replica_details(self, env: Mapping[str, str]) -> dict[str, str]:
        """What a new replica's record keeps of its device (shown by describe, counted by ``device_env``):
        the execution provider that runs it and the GPU it is pinned to, if any."""
        details = {"provider": CPU if self.device is None else self.device.provider}
        if "CUDA_VISIBLE_DEVICES" in env:
            details["gpu"] = env["CUDA_VISIBLE_DEVICES"]
        return details


class DesiredLoader:
    """Reads deployments from the registry. An artifact's digest is verified once per process, then by each
    replica as it loads the bytes; an artifact found corrupt is re-verified at every load until it is intact.
    """

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings
        self._signed = SignedModels.from_settings(settings)
        self._verified: set[str] = set()
        self._refs: dict[str, str] = {}
        """sha256 → the ``model:version`` last seen with it, to name it in messages."""
        self._warned: set[tuple[str, int]] = set()
        """(deployment, revision) whose fallback to the CPU was logged."""
        self._templates: dict[str, str] = {}
        """template → sha256, to find the artifact of a replica that refused its model."""
        self.corrupt: dict[str, str] = {}
        """Artifacts whose bytes are not their digest (sha256 → why): no replica of them is started."""
        self.problems: dict[str, str] = {}
        """Deployments that cannot run (their model is gone...): name → why; reported once per change."""

    def blocked(self, desired: Desired) -> bool:
        """Whether starting a replica of ``desired`` would load corrupt bytes (those running keep serving)."""
        return desired.sha256 in self.corrupt

    def replica_refused(self, template: str, why: str) -> str | None:
        """A replica of ``template`` found its model's bytes corrupt (``why``): start none until a load
        finds the artifact intact. Returns the ``model:version`` it was, if known."""
        sha256 = self._templates.get(template)
        if sha256 is None:
            return None
        self._verified.discard(sha256)
        ref = self._refs.get(sha256, sha256)
        self.corrupt.setdefault(sha256, f"model {ref}: {why}")
        return ref

    def load(self, running: Mapping[str, Desired] | None = None) -> dict[str, Desired]:
        """Every deployment that can run; one that cannot is skipped and its reason kept in ``problems``.

        ``running``: what the caller keeps running per deployment; a corrupt artifact there is the problem
        to show first, whatever the current revision asks for.
        """
        self._recheck()
        desired: dict[str, Desired] = {}
        problems: dict[str, str] = {}
        rollouts = {r.deployment: r for r in self._registry.rollouts.active_all()}
        for info in self._registry.deployments.list():
            if info.spec.get("spec", {}).get("target") == "kubernetes":
                continue  # applied to the cluster, which runs its replicas (targets/kubernetes.py)
            try:
                desired[info.name] = self._desired(info)
            except errors.ConveyorError as exc:
                problems[info.name] = exc.message
            rollout = rollouts.get(info.name)
            if rollout is not None and info.name in desired:
                try:
                    stable = self._stable(info, rollout.stable_revision)
                except errors.ConveyorError as exc:  # its model deleted: the candidate runs alone
                    problems[info.name] = f"stable revision {rollout.stable_revision}: {exc.message}"
                else:
                    desired[info.name] = replace(desired[info.name], stable=stable)
            now = desired[info.name].sha256 if info.name in desired else None
            if now in self.corrupt:  # still returned (no replica starts) so what runs of it stays routed
                problems[info.name] = self.corrupt[now]
            kept = (running or {}).get(info.name)
            if kept is not None and kept.sha256 in self.corrupt and kept.sha256 != now:
                why = f"running version {self.corrupt[kept.sha256]}"
                other = problems.get(info.name)
                problems[info.name] = why if other is None else f"{why}; revision {info.revision}: {other}"
        self.problems = problems
        return desired

    def _stable(self, info: DeploymentInfo, revision: int) -> Desired:
        """The Desired of an earlier ``revision`` of the deployment (a rollout's stable side)."""
        stored = self._registry.deployments.revision(info.name, revision)
        return self._desired(replace(info, revision=revision, spec=stored.spec, model=stored.model))

    def _recheck(self) -> None:
        """Hash again each artifact known corrupt: one restored (re-registered, restored from a backup)
        clears its problem and replicas start again."""
        for sha256 in list(self.corrupt):
            ref = self._refs.get(sha256, sha256)
            try:
                self._registry.store.path(sha256)
            except (errors.IntegrityError, errors.NotFound) as exc:
                self.corrupt[sha256] = f"model {ref}: {exc.message}"
                continue
            log.info("artifact of %s is intact again", ref)
            del self.corrupt[sha256]
            self._verified.add(sha256)

    def _monitor(self, deployment: str, reference: Any, spec: Any) -> tuple[Path, str] | None:
        """The file and digest of what a replica watches (observe/monitoring.py), or None: nothing."""
        from conveyor.observe.monitoring import monitoring_document, write_document

        blocks = {} if spec.monitoring is None else spec.monitoring.model_dump(by_alias=True)
        doc = monitoring_document(
            reference if isinstance(reference, dict) else None,
            drift=blocks.get("drift"),
            inference_log=blocks.get("inferenceLog"),
            log_directory=self._settings.home / "inference-logs" / deployment,
        )
        return None if doc is None else write_document(doc, self._settings.home / "run" / "monitor")

    def _device(self, name: str, revision: int, spec: DeploymentSpec) -> Choice | None:
        """The device of the deployment's replicas (control/devices.py); a fallback's warning logged once
        per revision."""
        choice = device_choice(name, spec)
        if choice is not None and choice.warning is not None and (name, revision) not in self._warned:
            self._warned.add((name, revision))
            log.warning("%s", choice.warning)
        return choice

    def _desired(self, info: DeploymentInfo) -> Desired:
        doc = Deployment.model_validate(info.spec)
        spec = doc.spec
        if spec.target == "ray" and (missing := ray_problem(self._settings)) is not None:
            raise errors.InvalidInput(missing)  # a control plane started without CONVEYOR_RAY_ADDRESS
        ref = getattr(info, "model", None) or spec.model
        version = self._registry.resolve(ref)
        if (unsigned := self._signed.problem(self._registry, spec, version)) is not None:
            raise errors.InvalidInput(unsigned)  # no replica of it starts; what runs of a signed one stays
        self._refs[version.sha256] = version.ref
        if version.sha256 not in self._verified and version.sha256 not in self.corrupt:
            try:
                self._registry.artifact_path(version)  # hashes the blob; the replicas hash it again
            except (errors.IntegrityError, errors.NotFound) as exc:  # the blob changed, or is gone
                self.corrupt[version.sha256] = exc.message  # named by the registry: "model m:v: ..."
            else:
                self._verified.add(version.sha256)
        model_file = self._registry.artifact_location(version)
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
        device = self._device(info.name, info.revision, spec)
        if device is not None:  # only with resources.gpu, as placement: CPU deployments' templates stay
            # the same. cuda / tensorrt with no index: each replica sees the one GPU it is pinned to
            # (Desired.device_env), or cpu after a fallback. Batching the user left alone: the GPU's defaults.
            options["device"] = str(device.device)
            if device.is_gpu:
                explicit = set(self._settings.model_fields_set)
                if spec.batching.max_batch_size is not None:
                    explicit.add("max_batch_size")
                if spec.batching.max_queue_delay_microseconds is not None:
                    explicit.add("max_queue_delay_us")
                options.update(gpu_batching(explicit))
        if spec.cache is not None and spec.cache.enabled:  # only then, as placement: templates stay the same
            options["cache_max_entries"] = spec.cache.max_entries  # the replica's --cache-max-entries ...
            options["cache_max_bytes"] = spec.cache.max_bytes
            options["cache_ttl"] = spec.cache.ttl_seconds
        identity = {"model": version.name, "version": version.version, "sha256": version.sha256, **options}
        inprocess = spec.placement == "inprocess"  # auto is process for `conveyor up` (docs/serving.md)
        if inprocess:  # only then: the templates of process replicas running before the field stay the same
            identity["placement"] = "inprocess"
        if spec.target != "local":  # only then, as placement: a move to Ray replaces the local replicas
            identity["target"] = spec.target
        monitor = self._monitor(info.name, version.metadata.get("reference"), spec)
        if monitor is not None:  # only then, as placement: versions without a reference keep their template
            identity["monitor"] = monitor[1]
        template = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        self._templates[template] = version.sha256
        # Not part of the template (the digest is, above): the replica's --sha256 for its --model.
        options["sha256"] = f"{info.name}:{version.version}={version.sha256}"
        if monitor is not None:  # the replica's --monitor: the document's file, named by its digest
            options["monitor"] = f"{info.name}:{version.version}={monitor[0]}"
        policy = None if spec.autoscaling is None else policy_from_spec(spec.autoscaling)
        hold = None
        if spec.autoscaling is not None and spec.autoscaling.scale_to_zero:
            timeout = spec.autoscaling.hold_timeout_seconds or DEFAULT_HOLD_TIMEOUT_SECONDS  # set by the spec
            hold = Hold(float(timeout), MAX_HELD_REQUESTS)
        load = None
        if inprocess:
            load = InProcessLoad(
                model_file=str(model_file),
                sha256=version.sha256,
                model=info.name,  # served as deployment:version, as a replica process serves it
                version=str(version.version),
                max_batch_size=batching.max_batch_size or 1,
                max_queue_delay_us=batching.max_queue_delay_microseconds or 0,
                max_queue_size=batching.max_queue_size or 1,
                request_timeout_ms=batching.request_timeout_milliseconds or 1,
                intra_op_threads=options["intra_op_threads"],
                max_elements=self._settings.max_elements,
            )
        return Desired(
            name=info.name,
            revision=info.revision,
            model=version.name,
            version=str(version.version),
            model_file=model_file,
            sha256=version.sha256,
            template=template,
            options=options,
            target=spec.target,
            replicas=spec.replicas,
            policy=policy,
            hold=hold,
            inprocess=load,
            public=spec.public,
            device=device,
        )
