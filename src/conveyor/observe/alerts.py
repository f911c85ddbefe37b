"""Alert rules resolved per deployment, and their evaluation: a pure function from (rules, history, now,
previous states) to new states and the transitions between them (docs/observability.md, Alerts).

One alert per (rule, deployment, version): inactive -> pending (the condition holds) -> firing (it held for
the rule's ``for``) -> resolved (it stopped holding, or the version has no value any more). A pending alert
whose condition stops holding goes back to inactive, unannounced, as in Prometheus.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.observe.alert_defaults import DEFAULT_RULES
from conveyor.observe.alert_expr import Expr, parse
from conveyor.observe.alert_state import Alert, Key
from conveyor.observe.history import StackHistory
from conveyor.spec.resources import AlertFields, AlertRuleSpec, DeploymentSpec, parse_duration

KEEP_RESOLVED_S = 24 * 3600.0
"""A resolved alert is shown (and kept) this long after it resolved."""
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_TEMPLATE = re.compile(r"\{\{\s*\$(value|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as it applies to one deployment."""

    name: str
    deployment: str
    expr: Expr
    op: str
    threshold: float
    for_s: float
    severity: str
    summary: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    webhooks: tuple[str, ...] = ()
    source: str = "default"  # default | deployment | AlertRule

    @property
    def for_text(self) -> str:
        return _duration_text(self.for_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deployment": self.deployment,
            "expr": self.expr.text,
            "op": self.op,
            "threshold": self.threshold,
            "for": self.for_text,
            "severity": self.severity,
            "summary": self.summary,
            "labels": dict(self.labels),
            "webhooks": list(self.webhooks),
            "source": self.source,
            "promql": f"{self.expr.promql(self.deployment)} {self.op} {self.threshold!r}",
        }


@dataclass(frozen=True, slots=True)
class Transition:
    alert: Alert
    before: str  # inactive | pending | firing | resolved
    after: str  # inactive | pending | firing | resolved


def rules_for(
    deployment: str, spec: DeploymentSpec, alert_rules: Iterable[tuple[str, AlertRuleSpec]]
) -> list[Rule]:
    """The rules of one deployment: the built-in ones (as its spec changes them, unless disabled), its own,
    then the AlertRule resources bound to it or to none (a name its spec already uses is its spec's)."""
    own = {a.name: a for a in spec.alerts}
    out: list[Rule] = []
    for name, default in DEFAULT_RULES.items():
        given = own.get(name)
        if given is not None and not given.enabled:
            continue
        out.append(_rule(name, deployment, given, default, "default" if given is None else "deployment"))
    out += [
        _rule(a.name, deployment, a, {}, "deployment") for a in spec.alerts if a.name not in DEFAULT_RULES
    ]
    for name, r in alert_rules:
        if r.deployment in (None, deployment) and name not in own:
            out.append(_rule(name, deployment, r, DEFAULT_RULES.get(name, {}), "AlertRule"))
    seen: dict[str, Rule] = {}
    for rule in out:  # an AlertRule named like a built-in rule replaces it
        seen[rule.name] = rule
    return list(seen.values())


def _rule(
    name: str, deployment: str, given: AlertFields | None, default: Mapping[str, Any], source: str
) -> Rule:
    def pick(key: str, attr: str, fallback: Any) -> Any:
        value = getattr(given, attr) if given is not None else None
        return value if value is not None else default.get(key, fallback)

    labels = dict(given.labels) if given is not None else {}
    return Rule(
        name=name,
        deployment=deployment,
        expr=parse(pick("expr", "expr", None)),
        op=pick("op", "op", ">"),
        threshold=float(pick("threshold", "threshold", 0.0)),
        for_s=parse_duration(pick("for", "for_", "0s")),
        severity=pick("severity", "severity", "warning"),
        summary=pick("summary", "summary", None),
        labels=labels,
        webhooks=tuple(given.webhooks) if given is not None else (),
        source=source,
    )


def evaluate(
    rules: Iterable[Rule],
    history: StackHistory,
    now: float,
    previous: Mapping[Key, Alert],
    keep_resolved_s: float = KEEP_RESOLVED_S,
) -> tuple[dict[Key, Alert], list[Transition]]:
    """The alerts after one evaluation at ``now`` and the transitions it made. ``previous`` is the last
    evaluation's answer (or the stored alerts after a restart); resolved alerts older than
    ``keep_resolved_s`` are dropped."""
    states: dict[Key, Alert] = {}
    transitions: list[Transition] = []
    rules = list(rules)
    for rule in rules:
        values = rule.expr.values(history, rule.deployment)
        holding = {v: x for v, x in values.items() if OPS[rule.op](x, rule.threshold)}
        keys = {(rule.name, rule.deployment, v) for v in holding}
        keys |= {k for k in previous if k[0] == rule.name and k[1] == rule.deployment}
        for key in keys:
            before = previous.get(key)
            value = values.get(key[2])
            after = _step(rule, key, before, value if key[2] in holding else None, value, now)
            old, new = _state(before), _state(after)
            if old != new:
                alert = after if after is not None else before
                assert alert is not None  # both None would be inactive -> inactive
                transitions.append(Transition(alert, old, new))
            if after is not None:
                states[key] = after
    ruled = {(r.name, r.deployment) for r in rules}
    for key, alert in previous.items():  # a rule that went away (or its deployment): what was on resolves
        if key[:2] in ruled or key in states:
            continue
        if alert.state == "firing":
            gone = replace(alert, state="resolved", resolved_at=now)
            states[key] = gone
            transitions.append(Transition(gone, "firing", "resolved"))
        elif alert.state == "pending":
            transitions.append(Transition(alert, "pending", "inactive"))
        else:
            states[key] = alert
    for key, alert in list(states.items()):
        if (
            alert.state == "resolved"
            and alert.resolved_at is not None
            and now - alert.resolved_at > keep_resolved_s
        ):
            del states[key]
    return states, transitions


def _step(
    rule: Rule, key: Key, before: Alert | None, holding: float | None, value: float | None, now: float
) -> Alert | None:
    """One alert's next state; None: inactive (not kept)."""
    if holding is None:  # the condition does not hold (or there is no value)
        if before is None or before.state == "pending":
            return None
        if before.state == "firing":
            return replace(before, state="resolved", resolved_at=now, value=value)
        return before  # resolved stays resolved
    if before is None or before.state == "resolved":  # a new episode
        before = Alert(
            rule=rule.name,
            deployment=rule.deployment,
            version=key[2],
            severity=rule.severity,
            state="pending",
            value=holding,
            active_since=now,
        )
    fired = before.state == "firing" or now - before.active_since >= rule.for_s
    labels = alert_labels(rule, key[2])
    return replace(
        before,
        state="firing" if fired else "pending",
        value=holding,
        severity=rule.severity,
        fired_at=before.fired_at if before.state == "firing" else (now if fired else None),
        resolved_at=None,
        labels=labels,
        annotations=_annotations(rule, labels, holding),
    )


def _state(alert: Alert | None) -> str:
    return "inactive" if alert is None else alert.state


def alert_labels(rule: Rule, version: str) -> dict[str, str]:
    """The labels of an alert, as the exported Prometheus rule gives them too."""
    labels = {"alertname": rule.name, "deployment": rule.deployment, "severity": rule.severity}
    if rule.expr.per_version:
        labels["version"] = version
    return {**labels, **rule.labels}


def _annotations(rule: Rule, labels: Mapping[str, str], value: float) -> dict[str, str]:
    out = {
        "expr": rule.expr.text,
        "threshold": f"{rule.op} {rule.threshold:g}",
        "value": f"{value:.4g}",
    }
    if rule.summary:
        out["summary"] = render(rule.summary, labels, value)
    return out


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    """``{{ $value }}`` and ``{{ $labels.NAME }}`` filled in, as Prometheus fills them."""

    def fill(match: re.Match[str]) -> str:
        return f"{value:.4g}" if match.group(1) == "value" else labels.get(match.group(2) or "", "")

    return _TEMPLATE.sub(fill, template)


def _duration_text(seconds: float) -> str:
    """A Prometheus duration for ``seconds``: 2m, 90s, 1500ms, 0s."""
    ms = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms else "0s"
