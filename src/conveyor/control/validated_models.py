"""The requireValidated policy as the control plane applies it: at apply and at ``rollout start``.

A deployment with ``requireValidated: true`` runs only a version whose newest ``conveyor validate`` run
passed (registry/validations.py). The run's record is what counts, not the ``validated`` tag alone: a tag is
anyone's to edit, a verdict is only written by a validation.
"""

from __future__ import annotations

from conveyor import errors
from conveyor.registry import Registry
from conveyor.registry.records import VersionInfo
from conveyor.spec import Deployment
from conveyor.spec.resources import DeploymentSpec


def validation_problem(registry: Registry, spec: DeploymentSpec, version: VersionInfo) -> str | None:
    """Why ``version`` may not run for a deployment of ``spec``, or None (not required, or its newest
    validation passed)."""
    if not spec.require_validated:
        return None
    latest = registry.validations.latest(version.name, version.version)
    if latest is None:
        return (
            f"model {version.ref} was never validated (requireValidated; validate it: "
            f"conveyor validate {version.ref})"
        )
    if not latest.passed:
        failed = ", ".join(str(g.get("gate")) for g in latest.gates if not g.get("passed")) or "a gate"
        return (
            f"model {version.ref} failed its latest validation ({failed}, {latest.at:%Y-%m-%d %H:%M} UTC) "
            "(requireValidated)"
        )
    return None


def check_validated(registry: Registry, resources: list[Deployment], versions: list[VersionInfo]) -> None:
    """Conflict (409), one line per deployment, for each that requires validation and whose version has no
    passing one."""
    problems = [
        f"deployment {r.metadata.name!r}: {why}"
        for r, v in zip(resources, versions, strict=True)
        if (why := validation_problem(registry, r.spec, v)) is not None
    ]
    if problems:
        raise errors.Conflict("\n".join(problems), problems=problems)
