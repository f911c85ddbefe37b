"""What the management API does with rollouts (docs/rollouts.md), synchronous (run in a thread): check
before an apply that a rollout can start, keep the rollout record in step with every new revision, start
one by command (``conveyor rollout start``).

A new revision of a deployment that already runs, with another model and ``spec.rollout.strategy`` other
than replace, starts a rollout: stable is the revision before, candidate the new one. During a rollout, a
new revision with the candidate's model (a scale, a changed batching) becomes the candidate; one with the
stable's model ends the rollout (superseded: the stable runs alone again); one with a third model starts a
new rollout from the same stable.
"""

from __future__ import annotations

from typing import Any

from conveyor import errors
from conveyor.control.rollouts import NOT_VALIDATED_TAG, version_of
from conveyor.control.validated_models import validation_problem
from conveyor.registry import Registry
from conveyor.registry.records import DeploymentInfo, RolloutInfo
from conveyor.spec import Deployment
from conveyor.spec.rollout import RolloutSpec

PROGRESSIVE = ("canary", "blueGreen", "shadow", "abTest")


def rollout_of(spec: dict[str, Any]) -> RolloutSpec | None:
    """The progressive rollout block of a stored spec, or None (absent, or strategy replace)."""
    block = spec.get("spec", {}).get("rollout")
    if not block:
        return None
    rollout = RolloutSpec.model_validate(block)
    return rollout if rollout.strategy in PROGRESSIVE else None


def check_start(registry: Registry, resource: Deployment, model: str, *, force: bool = False) -> str | None:
    """Before storing ``resource`` (running ``model``): InvalidInput / Conflict when the rollout it would
    start cannot run; the stable model it would start from, or None when it starts none."""
    rollout = resource.spec.rollout
    if rollout is None or rollout.strategy not in PROGRESSIVE:
        return None
    try:
        info = registry.deployments.get(resource.metadata.name)
    except errors.NotFound:
        return None  # a new deployment: nothing runs to roll out from
    active = registry.rollouts.active(resource.metadata.name)
    stable = active.stable_model if active is not None else info.model
    if stable is None or model in (stable, info.model):
        return None  # the same model (another setting changed), or back to stable: no new rollout
    where = f"deployment {resource.metadata.name}"
    if resource.spec.placement == "inprocess":
        raise errors.InvalidInput(
            f"{where}: a rollout runs stable and candidate side by side as replica processes; "
            "placement inprocess cannot (use placement process, or spec.rollout.strategy replace)"
        )
    if version_of(stable) == version_of(model):
        raise errors.Conflict(
            f"{where}: the candidate {model} would be served as version {version_of(model)}, as the stable "
            f"{stable} is: a rollout routes by version (use spec.rollout.strategy replace to switch)"
        )
    if not force and rollout.strategy != "shadow":
        name, _, number = model.rpartition(":")
        tags = registry.get_version(name, int(number)).tags
        if tags.get(NOT_VALIDATED_TAG[0]) == NOT_VALIDATED_TAG[1]:
            raise errors.Conflict(
                f"{where}: {model} is marked not validated (tag validated=false): it may only be shadowed "
                "(strategy shadow); `conveyor rollout start --force` gives it traffic anyway (audited)"
            )
    return stable


def follow_revision(
    registry: Registry, name: str, user: str, *, start: bool = True, force: bool = False
) -> RolloutInfo | None:
    """After a new revision of ``name``: start, move or end its rollout as the module docstring says;
    ``start=False`` (a scale, a rollback) never starts one. The rollout started, if any."""
    info = registry.deployments.get(name)
    active = registry.rollouts.active(name)
    if active is not None:
        if info.model == active.candidate_model:
            if active.candidate_revision != info.revision:
                registry.rollouts.update(
                    active.id,
                    candidate_revision=info.revision,
                    event=("CandidateChanged", f"revision {info.revision} is the candidate now", None),
                )
            return None
        if info.model == active.stable_model or not start:
            why = f"revision {info.revision} runs {info.model}: the rollout to {active.candidate_model} ends"
            registry.rollouts.update(
                active.id, phase="superseded", reason=why, actor=user, event=("Superseded", why, None)
            )
            return None
    if not start:
        return None
    rollout = rollout_of(info.spec)
    if rollout is None:
        if active is not None:  # a third model with strategy replace: it replaces both
            why = f"revision {info.revision} runs {info.model} (strategy replace)"
            registry.rollouts.update(
                active.id, phase="superseded", reason=why, actor=user, event=("Superseded", why, None)
            )
        return None
    stable_revision, stable_model = _stable_of(registry, info, active)
    if stable_model is None or stable_model == info.model:
        return None
    steps = _first_weight(rollout)
    return registry.rollouts.start(
        name,
        stable_revision=stable_revision,
        candidate_revision=info.revision,
        stable_model=stable_model,
        candidate_model=str(info.model),
        strategy=rollout.strategy,
        spec=rollout.model_dump(mode="json", by_alias=True, exclude_none=True),
        weight=steps,
        started_by=user,
        forced=force,
    )


def _stable_of(
    registry: Registry, info: DeploymentInfo, active: RolloutInfo | None
) -> tuple[int, str | None]:
    """The revision (and its model) a new rollout starts from: the active one's stable, else the revision
    before the current one."""
    if active is not None:
        return active.stable_revision, active.stable_model
    if info.revision <= 1:
        return 0, None
    before = registry.deployments.revision(info.name, info.revision - 1)
    return before.revision, before.model


def _first_weight(rollout: RolloutSpec) -> float:
    from conveyor.control.rollout_plan import plan, traffic

    return traffic(plan(rollout)[0], 0.0).weight


def start_by_command(
    registry: Registry,
    name: str,
    to: str,
    *,
    strategy: str | None,
    force: bool,
    user: str,
) -> tuple[int, RolloutInfo]:
    """``conveyor rollout start NAME --to MODEL:VERSION``: the current spec with ``model`` = ``to`` (and
    ``spec.rollout.strategy`` = ``strategy`` when given; canary when the spec has no rollout block) as a new
    revision, and its rollout. The new revision's number and the rollout."""
    info = registry.deployments.get(name)
    doc = dict(info.spec)
    spec = dict(doc.get("spec", {}))
    spec["model"] = to
    block = dict(spec.get("rollout") or {})
    if strategy is not None:
        block["strategy"] = strategy
    elif not block or block.get("strategy") == "replace":
        block["strategy"] = "canary"
    spec["rollout"] = block
    doc["spec"] = spec
    try:
        resource = Deployment.model_validate(doc)
    except ValueError as exc:  # pydantic's ValidationError: the strategy given does not fit the spec
        raise errors.InvalidInput(f"deployment {name}: {_first_error(exc)}") from None
    version = registry.resolve(to)
    model = version.ref
    if model == info.model:
        raise errors.Conflict(f"deployment {name} runs {model} already")
    # requireValidated is the deployment's own policy: --force (which skips the validated=false tag) does not
    # skip it
    if (unvalidated := validation_problem(registry, resource.spec, version)) is not None:
        raise errors.Conflict(f"deployment {name}: {unvalidated}")
    if check_start(registry, resource, model, force=force) is None:
        raise errors.Conflict(f"deployment {name}: {model} would start no rollout (it is the stable model)")
    result = registry.deployments.apply(
        resource.to_dict(), resource.fingerprint(), model=model, created_by=user, change_cause="rollout start"
    )
    started = follow_revision(registry, name, user, force=force)
    if started is None:
        raise errors.Conflict(f"deployment {name}: no rollout started for {model}")
    if force:
        registry.rollouts.update(
            started.id,
            actor=user,
            audit_action="rollout.force",
            audit_details={"model": model, "why": "started with --force: validation gate skipped"},
        )
    return result.revision, started


def _first_error(exc: Exception) -> str:
    errors_of = getattr(exc, "errors", None)
    if callable(errors_of):
        found = errors_of()
        if found:
            first = found[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first.get('msg', '')}".strip(": ")
    return str(exc).splitlines()[0]
