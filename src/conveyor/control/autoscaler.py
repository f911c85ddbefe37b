"""The autoscaler policy: replicas per deployment version from in-flight requests averaged over a window.

Pure functions of the samples the caller feeds in: no I/O, no threads, no clock (time is always passed in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from conveyor.errors import InvalidInput
from conveyor.spec import Autoscaling

# ceil() of a ratio that is an integer up to float noise (12.000000001 / 4) must not round up.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class AutoscalingPolicy:
    """How one deployment version is sized; the defaults are documented in docs/autoscaling.md."""

    min_replicas: int = 1
    max_replicas: int = 10
    target_in_flight: float = 2.0
    """In-flight requests one replica should carry on average."""
    window_s: float = 10.0
    """In-flight samples are averaged over the last ``window_s`` seconds."""
    scale_up_stabilization_s: float = 0.0
    """Scale up to the lowest recommendation of this window; at most one scale-up per window."""
    scale_down_stabilization_s: float = 60.0
    """Scale down to the highest recommendation of this window; at most one scale-down per window."""
    scale_to_zero: bool = False
    """Allow 0 replicas after ``idle_to_zero_s`` without traffic (requires ``min_replicas == 0``)."""
    idle_to_zero_s: float = 60.0
    """Seconds of zero in-flight requests before scaling to 0."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("min_replicas", "max_replicas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("target_in_flight", "window_s"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                problems.append(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        for name in ("scale_up_stabilization_s", "scale_down_stabilization_s", "idle_to_zero_s"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                problems.append(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.scale_to_zero, bool):
            problems.append(f"scale_to_zero must be a bool, got {self.scale_to_zero!r}")
        if not problems:
            if self.max_replicas < max(self.min_replicas, 1):
                problems.append(
                    f"max_replicas ({self.max_replicas}) must be >= 1 "
                    f"and >= min_replicas ({self.min_replicas})"
                )
            if self.scale_to_zero and self.min_replicas != 0:
                problems.append(f"scale_to_zero requires min_replicas 0, got {self.min_replicas}")
            if not self.scale_to_zero and self.min_replicas == 0:
                problems.append("min_replicas 0 requires scale_to_zero=True")
        if problems:
            raise InvalidInput("invalid autoscaling policy: " + "; ".join(problems), problems=problems)


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of a version: total in-flight requests (held ones included) and ready replicas."""

    time: float
    in_flight: float
    ready_replicas: int


@dataclass(frozen=True, slots=True)
class AutoscalerState:
    """What the caller keeps between calls for one version; every function returns a new one."""

    window_s: float
    """How long ``observe`` keeps samples; ``decide`` syncs it from the policy."""
    samples: tuple[Sample, ...] = ()
    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, replicas) recommended by ``decide``, for the stabilization windows."""
    last_scale_time: float | None = None
    """Time of the last scale decision (a decision whose ``desired`` differed from the current count)."""
    last_scale_to: int | None = None
    last_traffic_time: float | None = None
    idle_since: float | None = None
    """Time of the first zero-traffic sample after the last non-zero one; None while there is traffic."""
    from_zero: bool = False
    """The last scale was up from zero and no replica has been ready since: held requests keep sizing it."""

    @classmethod
    def for_policy(cls, policy: AutoscalingPolicy) -> AutoscalerState:
        return cls(window_s=policy.window_s)


@dataclass(frozen=True, slots=True)
class Decision:
    """How many replicas the version should have, why, and the state to keep for the next call."""

    desired: int
    reason: str
    state: AutoscalerState


def policy_from_spec(spec: Autoscaling) -> AutoscalingPolicy:
    """The policy a Deployment's ``spec.autoscaling`` block asks for; idle time to zero is the down window."""
    if spec.min_replicas == 0 and not spec.scale_to_zero:
        raise InvalidInput("spec.autoscaling: minReplicas 0 needs scaleToZero: true")
    return AutoscalingPolicy(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_in_flight=spec.target_in_flight,
        window_s=spec.window_seconds,
        scale_up_stabilization_s=spec.scale_up_stabilization_seconds,
        scale_down_stabilization_s=spec.scale_down_stabilization_seconds,
        scale_to_zero=spec.scale_to_zero,
        idle_to_zero_s=spec.scale_down_stabilization_seconds,
    )


def observe(
    state: AutoscalerState, now: float, in_flight_total: float, ready_replicas: int
) -> AutoscalerState:
    """Record one sample at ``now`` and drop those older than the window."""
    if not _is_number(now):
        raise InvalidInput(f"sample time must be a finite number, got {now!r}")
    if not _is_number(in_flight_total) or in_flight_total < 0:
        raise InvalidInput(f"in_flight_total must be a finite number >= 0, got {in_flight_total!r}")
    if ready_replicas < 0:
        raise InvalidInput(f"ready_replicas must be >= 0, got {ready_replicas!r}")
    if state.samples and now < state.samples[-1].time:
        raise InvalidInput(f"sample time {now} is before the previous sample at {state.samples[-1].time}")
    samples = (*_within(state.samples, now, state.window_s), Sample(now, in_flight_total, ready_replicas))
    if in_flight_total > 0:
        return replace(state, samples=samples, last_traffic_time=now, idle_since=None)
    idle_since = now if state.idle_since is None else state.idle_since
    return replace(state, samples=samples, idle_since=idle_since)


def decide(policy: AutoscalingPolicy, state: AutoscalerState, now: float, current_replicas: int) -> Decision:
    """The desired replica count for a version that has ``current_replicas`` now.

    In order: policy bounds, scale from zero, missing data, scale to zero, then the averaged load through the
    stabilization windows and the one-decision-per-window rule (docs/autoscaling.md).
    """
    if current_replicas < 0:
        raise InvalidInput(f"current_replicas must be >= 0, got {current_replicas!r}")
    keep_s = max(policy.scale_up_stabilization_s, policy.scale_down_stabilization_s)
    state = replace(
        state,
        window_s=policy.window_s,
        samples=_within(state.samples, now, policy.window_s),
        recommendations=tuple((t, r) for t, r in state.recommendations if now - t < keep_s),
    )
    current = current_replicas

    def hold(reason: str) -> Decision:
        return Decision(current, reason, state)

    def scale(to: int, reason: str) -> Decision:
        return Decision(to, reason, replace(state, last_scale_time=now, last_scale_to=to))

    lo, hi = policy.min_replicas, policy.max_replicas
    if current > hi:
        return scale(hi, f"{current} replicas is above max_replicas -> {hi}")
    if current < lo:
        return scale(lo, f"{current} replicas is below min_replicas -> {lo}")

    samples = [s for s in state.samples if s.time <= now]
    if current == 0:
        since = state.last_scale_time
        held = max((s.in_flight for s in samples if since is None or s.time > since), default=0.0)
        if held <= 0:
            return hold("at 0 replicas with no requests held")
        to = min(max(_ceil(held / policy.target_in_flight), 1), hi)
        decision = scale(
            to, f"{_n(held)} requests held at 0 replicas -> {to} now (no up-stabilization from zero)"
        )
        return replace(decision, state=replace(decision.state, from_zero=True))
    if state.from_zero and samples and samples[-1].ready_replicas > 0:
        state = replace(state, from_zero=False)
    if state.from_zero:
        # The burst that woke the version may still be arriving while its replicas start: the first held
        # request alone started one. Size it by everything held since, up only, until a replica is ready.
        since = state.last_scale_time
        held = max((s.in_flight for s in samples if since is None or s.time >= since), default=0.0)
        to = min(_ceil(held / policy.target_in_flight), hi)
        if to > current:
            decision = scale(
                to, f"{_n(held)} requests held while {current} replicas start from zero -> {to} now"
            )
            return replace(decision, state=replace(decision.state, from_zero=True))

    if not samples:
        return hold(f"no samples in the last {_n(policy.window_s)}s: holding at {current}")

    idle_s = None if state.idle_since is None else now - state.idle_since
    if policy.scale_to_zero and idle_s is not None and idle_s >= policy.idle_to_zero_s:
        return scale(0, f"no requests for {_n(idle_s)}s (idle_to_zero_s {_n(policy.idle_to_zero_s)}) -> 0")

    avg = sum(s.in_flight for s in samples) / len(samples)
    floor = max(lo, 1)  # 0 only through the idle rule above
    rec = min(max(_ceil(avg / policy.target_in_flight), floor), hi)
    # No history (a fresh state, or metrics missing for longer than both windows): count the current size
    # as recommended now, so a restarted controller's first move still waits one stabilization window.
    history = state.recommendations or ((now, current),)
    state = replace(state, recommendations=(*history, (now, rec)))
    load = (
        f"avg in-flight {_n(avg)} over {_n(policy.window_s)}s / target {_n(policy.target_in_flight)} "
        f"-> {rec} replicas"
    )
    up_s, down_s = policy.scale_up_stabilization_s, policy.scale_down_stabilization_s
    up_window = [(t, r) for t, r in state.recommendations if now - t < up_s] or [(now, rec)]
    down_window = [(t, r) for t, r in state.recommendations if now - t < down_s] or [(now, rec)]
    up_to = min(r for _, r in up_window)
    down_to = max(r for _, r in down_window)

    if current < up_to:
        direction, to, window_s = "up", up_to, up_s
    elif current > down_to:
        direction, to, window_s = "down", down_to, down_s
    elif rec > current:
        # Some recommendation of the up window is <= current: wait until the newest such one ages out.
        until = max(t for t, r in up_window if r <= current) + up_s
        return hold(f"{load}; holding at {current}: up-stabilization until t+{_n(until - now)}s")
    elif rec < current:
        until = max(t for t, r in down_window if r >= current) + down_s
        return hold(f"{load}; holding at {current}: down-stabilization until t+{_n(until - now)}s")
    else:
        return hold(load)

    last = state.last_scale_time
    if last is not None and now - last < window_s:
        return hold(
            f"{load}; holding at {current}: {direction}-stabilization until t+{_n(last + window_s - now)}s "
            f"(one scale decision per window, last at t-{_n(now - last)}s)"
        )
    if to != rec:
        bound = "lowest" if direction == "up" else "highest"
        return scale(
            to, f"{load}; {direction} to {to}, the {bound} recommendation of the last {_n(window_s)}s"
        )
    return scale(to, load)


def _within(samples: tuple[Sample, ...], now: float, window_s: float) -> tuple[Sample, ...]:
    return tuple(s for s in samples if now - s.time < window_s)


def _ceil(ratio: float) -> int:
    return max(math.ceil(ratio - _EPSILON), 0)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _n(value: float) -> str:
    """A number for a reason: 12.5, 4, 0.3."""
    return f"{round(value, 1):g}"
