"""What the control plane does with alert rules in the registry: validate and store ``kind: AlertRule``
documents of an apply, and resolve every deployment's rules (built-in, its spec's, AlertRules) for the
evaluation loop, the API and the exports. Synchronous (run in a thread).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from conveyor import errors
from conveyor.observe.alerts import Rule, rules_for
from conveyor.registry import Registry
from conveyor.spec.resources import AlertRule, AlertRuleSpec, Deployment

KIND = AlertRule.kind_name


def validate_alert_rules(documents: list[dict[str, Any]]) -> list[AlertRule]:
    """The ``kind: AlertRule`` documents of an apply, validated; other kinds are left to the deployments'
    validation. InvalidInput lists every problem as ``documents[i].path: message``."""
    from conveyor.control.management_ops import document_problems, duplicate_name

    problems: list[str] = []
    out: list[AlertRule] = []
    seen: dict[str, int] = {}
    for i, doc in enumerate(documents):
        if doc.get("kind") != KIND:
            continue
        try:
            rule = AlertRule.model_validate(doc)
        except ValidationError as exc:
            problems += document_problems(i, exc)
            continue
        problems += duplicate_name(seen, i, KIND, rule.metadata.name)
        out.append(rule)
    if problems:
        raise errors.InvalidInput("\n".join(problems), problems=problems)
    return out


def apply_alert_rules(
    registry: Registry, rules: list[AlertRule], *, dry_run: bool, user: str
) -> list[dict[str, Any]]:
    """Store the rules (or, with ``dry_run``, say which would change): ``{"kind", "name", "changed",
    "created"}`` each."""
    if not rules:
        return []
    if dry_run:
        stored = {d["metadata"]["name"]: d for d in registry.alerts.rules()}
        return [
            {
                "kind": KIND,
                "name": r.metadata.name,
                "changed": stored.get(r.metadata.name) != r.to_dict(),
                "created": r.metadata.name not in stored,
            }
            for r in rules
        ]
    return registry.alerts.apply_rules([(r.to_dict(), r.fingerprint()) for r in rules], by=user)


def stored_alert_rules(registry: Registry) -> list[tuple[str, AlertRuleSpec]]:
    """Every applied AlertRule as (name, spec)."""
    return [(d["metadata"]["name"], AlertRule.model_validate(d).spec) for d in registry.alerts.rules()]


def deployment_rules(registry: Registry, deployment: str | None = None) -> list[Rule]:
    """The rules of every deployment (or of one: NotFound when it does not exist), as evaluated."""
    alert_rules = stored_alert_rules(registry)
    if deployment is not None:
        info = registry.deployments.get(deployment)
        return rules_for(info.name, Deployment.model_validate(info.spec).spec, alert_rules)
    out: list[Rule] = []
    for info in registry.deployments.list():
        out += rules_for(info.name, Deployment.model_validate(info.spec).spec, alert_rules)
    return out
