"""One alert's state, as the evaluator (observe/alerts.py) computes it and the registry (registry/alerts.py)
stores it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["pending", "firing", "resolved"]
Key = tuple[str, str, str]  # (rule, deployment, version); version "" where the rule has none


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's state; times are Unix seconds."""

    rule: str
    deployment: str
    version: str
    severity: str
    state: State
    value: float | None
    active_since: float  # when the condition began to hold (pending began)
    fired_at: float | None = None
    resolved_at: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.rule, self.deployment, self.version)

    @property
    def since(self) -> float:
        """When the alert entered its current state."""
        if self.state == "resolved" and self.resolved_at is not None:
            return self.resolved_at
        if self.state == "firing" and self.fired_at is not None:
            return self.fired_at
        return self.active_since

    def to_dict(self) -> dict[str, Any]:
        """The API's form: times as Unix seconds."""
        return {
            "rule": self.rule,
            "deployment": self.deployment,
            "version": self.version,
            "severity": self.severity,
            "state": self.state,
            "value": self.value,
            "since": self.since,
            "activeSince": self.active_since,
            "firedAt": self.fired_at,
            "resolvedAt": self.resolved_at,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }
