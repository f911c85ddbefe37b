"""What the management API does with the registry: apply, scale, describe. Synchronous (run in a thread);
the routes in ``management.py`` add the live state from the ``ControlRuntime`` on the event loop.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from conveyor import errors
from conveyor.control import rollout_ops
from conveyor.control.alert_ops import apply_alert_rules, validate_alert_rules
from conveyor.control.devices import check_devices
from conveyor.control.runtime import ControlRuntime
from conveyor.control.signed_models import SignedModels
from conveyor.control.validated_models import check_validated
from conveyor.registry import Registry
from conveyor.registry.records import ApplyResult, DeploymentInfo, VersionInfo
from conveyor.settings import get_settings
from conveyor.spec import KINDS, Deployment
from conveyor.spec.loader import dotted_path
from conveyor.spec.resources import AlertRule
from conveyor.targets.ray import ray_problem

RECENT_EVENTS = 20


LOCAL_MAX_REPLICAS = 64
"""Most replicas one deployment may ask of the local target: every one is a process on this machine."""


def _over_local_cap(target: str, replicas: int) -> str | None:
    """Why ``replicas`` is too many for ``target``, or None."""
    if target == "local" and replicas > LOCAL_MAX_REPLICAS:
        return (
            f"the local target runs each as a process on this machine and allows at most {LOCAL_MAX_REPLICAS}"
        )
    return None


def _ray_problems(i: int, resource: Deployment) -> list[str]:
    """What keeps ``target: ray`` from running this document here (docs/ray.md)."""
    spec, where = resource.spec, f"documents[{i}].spec"
    problems = [] if (missing := ray_problem(get_settings())) is None else [f"{where}.target: {missing}"]
    if spec.placement == "inprocess":  # the gateways load it: nothing would run on the cluster
        problems.append(f"{where}.placement: inprocess runs in the gateways; with target: ray leave it out")
    if spec.resources.gpu:  # a GPU is chosen on this machine (docs/gpu.md); Ray's num_gpus is not asked
        problems.append(f"{where}.resources.gpu: the ray target runs replicas on CPUs only")
    return problems


def validate_documents(documents: list[dict[str, Any]]) -> list[Deployment]:
    """Every document as a Deployment; InvalidInput lists every problem as ``documents[i].path: message``."""
    problems: list[str] = []
    out: list[Deployment] = []
    seen: dict[str, int] = {}
    for i, doc in enumerate(documents):
        kind = doc.get("kind")
        if kind == AlertRule.kind_name:  # validated and stored by alert_ops
            continue
        if not isinstance(kind, str) or KINDS.get(kind) is not Deployment:
            problems.append(
                f"documents[{i}].kind: unsupported {kind!r}; supported: {', '.join(sorted(KINDS))}"
            )
            continue
        try:
            resource = Deployment.model_validate(doc)
        except ValidationError as exc:
            problems += document_problems(i, exc)
            continue
        if resource.spec.target == "ray":
            problems += _ray_problems(i, resource)
        if resource.spec.target == "kubernetes" and resource.spec.rollout is not None:
            problems.append(  # the rollout controller judges replicas it runs; the cluster's it does not
                f"documents[{i}].spec.rollout: rollouts run on the local target; with target: kubernetes "
                "leave spec.rollout out (each model version is a Deployment of its own)"
            )
        spec = resource.spec
        field, most = (
            ("autoscaling.maxReplicas", spec.autoscaling.max_replicas)
            if spec.autoscaling is not None
            else ("replicas", spec.replicas or 0)
        )
        if why := _over_local_cap(spec.target, most):
            problems.append(f"documents[{i}].spec.{field}: {most} replicas; {why}")
        problems += duplicate_name(seen, i, "Deployment", resource.metadata.name)
        out.append(resource)
    if problems:
        raise errors.InvalidInput("\n".join(problems), problems=problems)
    return out


def resolve_model(registry: Registry, deployment: str, ref: str) -> VersionInfo:
    """``ref`` (a deployment's ``spec.model``) resolved to a version now, as apply, diff and the rollback note
    all see it; NotFound names the deployment too."""
    try:
        return registry.resolve(ref)
    except errors.NotFound as exc:
        raise errors.NotFound(f"deployment {deployment!r}: {exc.message}") from None


def resolve_models(registry: Registry, resources: list[Deployment]) -> list[VersionInfo]:
    """Each resource's ``spec.model`` resolved by ``resolve_model``."""
    return [resolve_model(registry, r.metadata.name, r.spec.model) for r in resources]


def apply_documents(
    registry: Registry,
    documents: list[dict[str, Any]],
    *,
    dry_run: bool,
    user: str,
    policy: SignedModels | None = None,
) -> list[dict[str, Any]]:
    """Validate all, resolve all, check signatures where required (``policy``; None: the spec's
    requireSignedModels against no trusted key), then apply all in one transaction (or, with ``dry_run``,
    say what would change). AlertRule documents are stored after the deployments (alert_ops)."""
    rules = validate_alert_rules(documents)
    resources = validate_documents(documents)
    versions = resolve_models(registry, resources)
    check_signed(registry, resources, versions, policy or SignedModels(everywhere=False, trusted_dir=None))
    check_validated(registry, resources, versions)  # requireValidated: a passing `conveyor validate`
    warnings = check_devices(resources)  # resources.gpu: refused here when this machine has no GPU
    models = [v.ref for v in versions]
    for resource, model in zip(resources, models, strict=True):  # a rollout that cannot run: refused now
        rollout_ops.check_start(registry, resource, model)
    cluster = [(r, v) for r, v in zip(resources, versions, strict=True) if r.spec.target == "kubernetes"]
    if cluster and not dry_run:  # first: a cluster that refuses them leaves the registry as it was
        from conveyor.targets.kubernetes import apply_to_cluster

        apply_to_cluster(cluster)
    if dry_run:
        outcome = [
            _preview(registry, resource, model)[0] for resource, model in zip(resources, models, strict=True)
        ]
    else:  # one transaction: every document is stored, or none
        items = [(r.to_dict(), r.fingerprint(), m) for r, m in zip(resources, models, strict=True)]
        outcome = registry.deployments.apply_all(items, created_by=user)
        for result in outcome:
            if result.changed:  # a new model with spec.rollout starts a rollout (docs/rollouts.md)
                rollout_ops.follow_revision(registry, result.name, user)
    return [
        {"kind": resource.kind, **result.to_dict(), "model": model}
        | ({"warning": w} if (w := warnings.get(resource.metadata.name)) else {})
        for resource, result, model in zip(resources, outcome, models, strict=True)
    ] + apply_alert_rules(registry, rules, dry_run=dry_run, user=user)


def check_signed(
    registry: Registry, resources: list[Deployment], versions: list[VersionInfo], policy: SignedModels
) -> None:
    """InvalidInput, one line per deployment, for each that requires signed models and whose version is
    not signed by a trusted key (or whose signature does not verify)."""
    problems = [
        f"deployment {r.metadata.name!r}: {why}"
        for r, v in zip(resources, versions, strict=True)
        if (why := policy.problem(registry, r.spec, v)) is not None
    ]
    if problems:
        raise errors.InvalidInput("\n".join(problems), problems=problems)


def diff_documents(registry: Registry, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``apply`` would do with each document, compared with what is deployed: the live spec and the
    model reference resolved on both sides (version and artifact digest), so an alias that moved since the
    last apply is a change, as it is to apply. ``changed`` is exactly apply's rule (``_preview``)."""
    resources = validate_documents(documents)
    out = []
    for resource, version in zip(resources, resolve_models(registry, resources), strict=True):
        result, current = _preview(registry, resource, version.ref)
        live_ref = _spec_model(current.spec) if current is not None else None
        live_model = current.model if current is not None else None
        out.append(
            {
                "kind": resource.kind,
                "name": resource.metadata.name,
                "exists": current is not None,
                "revision": current.revision if current is not None else None,
                "next_revision": result.revision if result.changed else None,
                "changed": result.changed,
                "spec_changed": current is None or current.fingerprint != resource.fingerprint(),
                "model_changed": live_model != version.ref,
                "live_spec": current.spec if current is not None else None,
                "ref": resource.spec.model,
                "live_ref": live_ref,
                "model": version.ref,
                "live_model": live_model,
                "digest": version.sha256,
                "live_digest": _digest(registry, live_model),
            }
        )
    return out


def rollback(
    registry: Registry, name: str, to_revision: int | None, *, user: str
) -> tuple[ApplyResult, dict[str, Any]]:
    """Roll back (``DeploymentStore.rollback``); the answer adds the ``model`` the deployment now runs and
    ``next_apply``: when its spec's model reference now resolves to another version (an alias moved since
    that revision was made), the ``ref`` and the ``model`` a later apply of a file naming it rolls out."""
    _not_on_kubernetes(registry.deployments.get(name).spec, name, "roll it back")
    result = registry.deployments.rollback(name, to_revision, created_by=user)
    if result.changed:  # a rollback during a rollout ends it (the revision rolled back to runs alone)
        rollout_ops.follow_revision(registry, name, user, start=False)
    current = registry.deployments.revision(name, result.revision)  # the one made, even if another follows
    ref = _spec_model(current.spec)
    next_apply: dict[str, Any] | None = None
    if ref is not None and current.model is not None:
        try:
            resolved: str | None = resolve_model(registry, name, ref).ref
        except errors.NotFound:
            resolved = None  # the alias or model is gone: the next apply of that file fails, and says why
        if resolved != current.model:
            next_apply = {"ref": ref, "model": resolved}
    return result, {"model": current.model, "next_apply": next_apply}


def scale(registry: Registry, name: str, replicas: int, *, user: str) -> ApplyResult:
    """A new revision of ``name`` with ``spec.replicas`` set, running the same model version."""
    deployments = registry.deployments
    current = deployments.get(name)
    resource = Deployment.model_validate(current.spec)
    _not_on_kubernetes(current.spec, name, "scale it")
    if resource.spec.autoscaling is not None:
        bounds = resource.spec.autoscaling
        raise errors.Conflict(
            f"deployment {name!r} is autoscaled ({bounds.min_replicas}..{bounds.max_replicas} replicas): "
            "change spec.autoscaling and apply it instead"
        )
    if why := _over_local_cap(resource.spec.target, replicas):
        raise errors.InvalidInput(f"replicas: {replicas}; {why}")
    if resource.spec.placement == "inprocess" and replicas != 1:
        raise errors.InvalidInput(
            f"replicas: {replicas}; deployment {name!r} has placement: inprocess (one copy inside each "
            "gateway): apply it with placement: process to scale it"
        )
    spec = current.spec
    scaled = Deployment.model_validate({**spec, "spec": {**spec["spec"], "replicas": replicas}})
    result = deployments.apply(
        scaled.to_dict(),
        scaled.fingerprint(),
        model=current.model,
        created_by=user,
        change_cause=f"scale to {replicas}",
        action="deployment.scale",
    )
    if result.changed:  # during a rollout the scaled revision is the candidate
        rollout_ops.follow_revision(registry, name, user, start=False)
    return result


def _not_on_kubernetes(spec: dict[str, Any], name: str, what: str) -> None:
    """Conflict for a deployment the cluster runs: scale and rollback would change the registry only."""
    inner = spec.get("spec")
    if isinstance(inner, dict) and inner.get("target") == "kubernetes":
        raise errors.Conflict(
            f"deployment {name!r} runs on kubernetes: to {what}, change its file and apply it (apply is "
            "what reaches the cluster)"
        )


def describe(registry: Registry, name: str) -> tuple[DeploymentInfo, dict[str, Any]]:
    """The deployment and its ``revisions`` and recent ``events``, read in one go."""
    deployments = registry.deployments
    info = deployments.get(name)
    extra = {
        "revisions": [r.to_dict() for r in deployments.history(name)],
        "events": [e.to_dict() for e in deployments.events(name, RECENT_EVENTS)],
    }
    return info, extra


def model_detail(registry: Registry, name: str) -> dict[str, Any]:
    versions = registry.list_versions(name)  # NotFound for an unknown model
    model = next((m for m in registry.list_models() if m.name == name), None)
    if model is None:
        raise errors.NotFound(f"model {name!r} not found")
    return {"model": model.to_dict(), "versions": [v.to_dict() for v in versions]}


def status(info: DeploymentInfo, runtime: ControlRuntime) -> dict[str, Any]:
    """A DeploymentStatus (docs/control-plane.md): the registry's record plus the runtime's live state."""
    return {
        **info.to_dict(),
        "replicas": runtime.replica_counts(info.name),
        "placement": placement(info.spec),
        "routed": runtime.routed(),
        "endpoint": endpoint_path(info.name),
        "problem": runtime.problem(info.name),
        "rollout": runtime.rollout(info.name),
    }


def placement(spec: dict[str, Any]) -> str:
    """Where a deployment's replicas run: ``process`` or ``inprocess`` (auto, left out of the canonical
    spec, is process under the control plane; docs/serving.md)."""
    inner = spec.get("spec")
    chosen = inner.get("placement", "auto") if isinstance(inner, dict) else "auto"
    return "inprocess" if chosen == "inprocess" else "process"


def endpoint_path(name: str) -> str:
    return f"/v2/models/{name}"


def _preview(
    registry: Registry, resource: Deployment, model: str
) -> tuple[ApplyResult, DeploymentInfo | None]:
    """What ``apply`` of ``resource`` running ``model`` would do (its rule: a new revision unless the
    fingerprint AND the resolved model are current), and the current deployment if there is one."""
    name = resource.metadata.name
    try:
        current = registry.deployments.get(name)
    except errors.NotFound:
        return ApplyResult(name, 1, changed=True), None
    if (current.fingerprint, current.model) == (resource.fingerprint(), model):
        return ApplyResult(name, current.revision, changed=False), current
    return ApplyResult(name, current.revision + 1, changed=True), current


def _spec_model(spec: dict[str, Any]) -> str | None:
    """``spec.model`` of a stored canonical spec (None if an older Conveyor stored something else)."""
    model = spec.get("spec", {}).get("model") if isinstance(spec.get("spec"), dict) else None
    return model if isinstance(model, str) else None


def _digest(registry: Registry, model: str | None) -> str | None:
    """The artifact digest of a resolved ``name:version``; None if unknown or since deleted."""
    if model is None:
        return None
    try:
        return registry.resolve(model).sha256
    except (errors.NotFound, errors.InvalidInput):
        return None


def error_text(error: Any) -> str:
    """A pydantic error's message, in the words the spec loader uses for the common kinds."""
    if error["type"] == "missing":
        return "required field missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return str(error["msg"]).removeprefix("Value error, ")


def document_problems(i: int, exc: ValidationError) -> list[str]:
    """``documents[i].path: message`` for each error of the i-th document of an apply."""
    return [
        f"documents[{i}]" + (f".{dotted_path(e['loc'])}" if e["loc"] else "") + f": {error_text(e)}"
        for e in exc.errors()
    ]


def duplicate_name(seen: dict[str, int], i: int, kind: str, name: str) -> list[str]:
    """The problem when an earlier document of the apply has the same ``kind`` and ``name`` (none
    otherwise); records where the name was first seen."""
    first = seen.setdefault(name, i)
    if first == i:
        return []
    return [f"documents[{i}].metadata.name: duplicate {kind} {name!r} (documents[{first}])"]
