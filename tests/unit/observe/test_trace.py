"""traceparent: a caller's trace is kept with a new span id; a missing or malformed one starts a new trace."""

from __future__ import annotations

import pytest

from conveyor.observe import trace

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_parent_keeps_its_trace_id_and_sampled_flag_with_a_new_span_id() -> None:
    span = trace.span(PARENT, 0.0)
    assert trace.valid(span) and trace.trace_id(span) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span[36:52] != PARENT[36:52] and trace.sampled(span)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "garbage\r\nx: y",
    ],
)
def test_a_missing_or_malformed_parent_starts_a_new_trace(bad: str | None) -> None:
    span = trace.span(bad, 0.0)
    assert trace.valid(span) and span.startswith("00-") and not trace.sampled(span)
    assert trace.trace_id(span) != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_sampling_follows_the_rate_where_the_caller_did_not_ask() -> None:
    unsampled = PARENT[:-2] + "00"
    assert all(trace.sampled(trace.span(unsampled, 1.0)) for _ in range(50))
    assert not any(trace.sampled(trace.span(unsampled, 0.0)) for _ in range(50))
    share = sum(trace.sampled(trace.span(None, 0.25)) for _ in range(4000)) / 4000
    assert 0.2 < share < 0.3


def test_new_ids_do_not_repeat() -> None:
    spans = {trace.span(None, 0.0) for _ in range(10_000)}
    assert len(spans) == 10_000 and len({trace.trace_id(s) for s in spans}) == 10_000
