"""What the gates conclude: one check per bound (its value, the limit, whether it held), a result per gate,
and the verdict over all of them. Plain data, JSON-able with ``to_dict``: stored on the version, printed by
``--json`` and drawn in the HTML report."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Op = Literal["<=", ">="]


@dataclass(frozen=True)
class Check:
    """One bound: ``value`` must be ``op`` ``limit``; ``baseline`` is the baseline's number, when compared."""

    name: str
    value: float | None
    limit: float
    op: Op = "<="
    unit: str = ""
    baseline: float | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        # A number that is not one (NaN: the model broke, None: nothing was measured) never holds a bound.
        if self.value is None or not math.isfinite(self.value):
            return False
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit

    def describe(self) -> str:
        """``p99 41.2 ms > 20 ms (maxP99Ms)``: why a failed check failed, in one phrase."""
        value = "none" if self.value is None else f"{self.value:.4g}"
        broken = ">" if self.op == "<=" else "<"
        unit = f" {self.unit}" if self.unit else ""
        why = f" ({self.note})" if self.note else ""
        return f"{self.name} {value}{unit} {broken} {self.limit:.4g}{unit}{why}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class GateResult:
    """One gate: its checks, the numbers it measured (for the report), or why it could not run."""

    gate: str
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # it could not be measured: the gate fails

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    def problems(self) -> list[str]:
        if self.error is not None:
            return [self.error]
        return [c.describe() for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "problems": self.problems(),
            "error": self.error,
            "numbers": self.numbers,
        }


def passed(gates: list[GateResult]) -> bool:
    """The verdict: every gate passed (no gate at all is no verdict, never a pass)."""
    return bool(gates) and all(g.passed for g in gates)


def summary(gates: list[GateResult]) -> str:
    """``passed`` or ``failed: performance: p99 ...; stability: ...``."""
    if passed(gates):
        return "passed"
    return "failed: " + "; ".join(f"{g.gate}: {', '.join(g.problems())}" for g in gates if not g.passed)
