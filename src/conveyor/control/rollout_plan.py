"""A rollout's plan and its decisions, as pure functions (docs/rollouts.md): which steps a strategy takes,
what traffic each step gives the candidate, and what a check's verdict does to the rollout.

Steps, per strategy:

* canary: one step per weight of ``steps`` (default 10, 50, 100), each needing one passing check;
* blueGreen: one ``preview`` step (weight 0: the candidate answers only at its explicit version) needing
  ``iterations`` passing checks, then all traffic at once (promotion);
* shadow: one ``shadow`` step (``mirror`` percent of requests also sent to the candidate, callers get
  stable's answers) needing ``iterations`` passing checks, then the canary steps when ``steps`` are given;
* abTest: one ``abTest`` step (``weight`` percent of users) needing ``iterations`` passing checks.

After the last step the candidate is promoted (or waits for approval first: ``promotion.manual``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

StepKind = Literal["canary", "preview", "shadow", "abTest"]
Action = Literal["stay", "advance", "approve", "promote", "rollback"]
"""What a verdict leads to: stay in the step (check again after an interval), advance to the next step,
wait for approval before the next step (or before promotion), promote, roll back."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    weight: float
    """Percent of bare-name requests the candidate answers (abTest: percent of users)."""
    mirror: float = 0.0
    """Percent of the requests stable answers that are also sent to the candidate (shadow)."""
    passes: int = 1
    """Passing checks in a row this step needs."""
    gate: bool = False
    """A manual gate: the rollout waits for approval before it enters this step."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "weight": self.weight,
            "mirror": self.mirror,
            "passes": self.passes,
            "gate": self.gate,
        }

    def describe(self) -> str:
        if self.kind == "shadow":
            return f"shadow {self.mirror:g}%"
        if self.kind == "preview":
            return "preview"
        if self.kind == "abTest":
            return f"A/B {self.weight:g}% of users"
        return f"{self.weight:g}%"


def plan(spec: Any) -> tuple[Step, ...]:
    """The steps of ``spec`` (a ``RolloutSpec``)."""
    gates = {float(w) for w in spec.manual_gates}
    canary = tuple(Step("canary", float(w), gate=float(w) in gates) for w in spec.plan_weights())
    if spec.strategy == "canary":
        return canary
    if spec.strategy == "blueGreen":
        return (Step("preview", 0.0, passes=spec.iterations),)
    if spec.strategy == "shadow":
        shadow = Step("shadow", 0.0, mirror=float(spec.mirror), passes=spec.iterations)
        return (shadow, *(canary if spec.steps else ()))
    if spec.strategy == "abTest":
        return (Step("abTest", float(spec.ab_test.weight), passes=spec.iterations),)
    raise ValueError(f"strategy {spec.strategy!r} has no plan")


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    passed: int
    """Passing checks in a row in the step after this decision."""
    failed: int
    """Failed checks of the rollout after this decision."""
    why: str


def decide(
    steps: tuple[Step, ...],
    step: int,
    passed: int,
    failed: int,
    verdict: str,
    *,
    threshold: int,
    manual_promotion: bool = False,
) -> Decision:
    """What a check's ``verdict`` (pass, fail, inconclusive) does in step ``step`` (an index of ``steps``)
    with ``passed`` passing checks in a row there and ``failed`` failed checks so far."""
    if verdict == "fail":
        failed += 1
        if failed >= threshold:
            return Decision("rollback", 0, failed, f"{failed} failed checks (threshold {threshold})")
        return Decision("stay", 0, failed, f"failed check {failed} of {threshold}")
    if verdict != "pass":
        return Decision("stay", passed, failed, "inconclusive: the step is checked again")
    passed += 1
    current = steps[step]
    if passed < current.passes:
        return Decision("stay", passed, failed, f"passed {passed} of {current.passes}")
    if step + 1 >= len(steps):
        if manual_promotion:
            return Decision("approve", passed, failed, "the last step passed: promotion waits for approval")
        return Decision("promote", passed, failed, "the last step passed")
    following = steps[step + 1]
    if following.gate:
        return Decision("approve", passed, failed, f"step {following.describe()} waits for approval")
    return Decision("advance", 0, failed, f"step {current.describe()} passed")


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the routing table's split gives the candidate now."""

    weight: float = 0.0
    mirror: float = 0.0
    compare: float = 0.0

    @property
    def any(self) -> bool:
        return bool(self.weight or self.mirror or self.compare)


def traffic(step: Step, compare: float) -> Traffic:
    """The split of a step: canary and A/B steps also compare ``compare`` percent of the candidate's answers
    with stable's (the analysis's ``compare``); blueGreen's preview gives the candidate no bare-name traffic
    (it answers at its explicit version only)."""
    if step.kind == "shadow":
        return Traffic(mirror=step.mirror)
    if step.kind == "preview":
        return Traffic()
    return Traffic(weight=step.weight, compare=compare)
