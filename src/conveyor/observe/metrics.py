"""Every Prometheus name Conveyor exposes, and the process's registry they are collected from.

Names follow Prometheus's conventions: base units (seconds, bytes), ``_total`` for counters. Each process
serves ``GET /metrics`` from ``REGISTRY``; the control plane's adds ``component`` and ``instance`` to every
sample of the processes it scrapes (observe/aggregate.py). docs/metrics.md documents each name; a test
checks that every name below is there.

Requests are counted with plain counters on the request path (observe/recorder.py) and turned into metric
families only when scraped (observe/collectors.py), so a scrape costs what it costs and a request does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str


REQUESTS = "conveyor_requests_total"
REQUEST_DURATION = "conveyor_request_duration_seconds"
QUEUE_DURATION = "conveyor_queue_duration_seconds"
INFERENCE_DURATION = "conveyor_inference_duration_seconds"
BATCH_SIZE = "conveyor_batch_size"
IN_FLIGHT = "conveyor_in_flight_requests"
QUEUE_DEPTH = "conveyor_queue_depth"
HELD = "conveyor_held_requests"
REPLICAS = "conveyor_replicas"
RESTARTS = "conveyor_replica_restarts_total"
SCALE_DECISIONS = "conveyor_autoscaler_decisions_total"
SCRAPE_ERRORS = "conveyor_scrape_errors_total"
LEADER = "conveyor_leader"
DRIFT_PSI = "conveyor_drift_psi"
DRIFT_MEAN_SHIFT = "conveyor_drift_mean_shift"
ALERTS_FIRING = "conveyor_alerts_firing"
COMPARISONS = "conveyor_comparisons_total"
COMPARISON_DIFFERENCE = "conveyor_comparison_max_abs_difference"
SHADOW_REQUESTS = "conveyor_shadow_requests_total"
SHADOW_DURATION = "conveyor_shadow_request_duration_seconds"
SHADOW_DROPPED = "conveyor_shadow_dropped_total"
CACHE_REQUESTS = "conveyor_cache_requests_total"
CACHE_ENTRIES = "conveyor_cache_entries"
CACHE_BYTES = "conveyor_cache_bytes"

_MV = ("model", "version")
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            REQUESTS,
            "counter",
            ("model", "version", "protocol", "code"),
            "Inference requests answered, by protocol (rest, grpc; channel: from a gateway to its replica) "
            "and code (HTTP status, or gRPC code name).",
        ),
        Metric(
            REQUEST_DURATION,
            "histogram",
            ("model", "version", "protocol"),
            "Time from a request's complete head to its answer, in seconds.",
        ),
        Metric(QUEUE_DURATION, "histogram", _MV, "Time a request waited in the batcher's queue, in seconds."),
        Metric(INFERENCE_DURATION, "histogram", _MV, "Time of one model call (one batch), in seconds."),
        Metric(BATCH_SIZE, "histogram", _MV, "Rows per model call."),
        Metric(IN_FLIGHT, "gauge", _MV, "Requests the model version's batcher holds: queued or running."),
        Metric(QUEUE_DEPTH, "gauge", _MV, "Requests waiting in the model version's batcher queue."),
        Metric(
            HELD, "gauge", ("model",), "Requests a gateway holds until a replica of their version is ready."
        ),
        Metric(
            REPLICAS,
            "gauge",
            ("deployment", "version", "state"),
            "Replica processes by state (starting, ready, draining, stopping).",
        ),
        Metric(
            RESTARTS, "counter", ("deployment", "version"), "Replica processes that exited and were replaced."
        ),
        Metric(
            SCALE_DECISIONS,
            "counter",
            ("deployment", "direction"),
            "Autoscaler decisions that changed a deployment's replica count (direction: up, down).",
        ),
        Metric(
            SCRAPE_ERRORS,
            "counter",
            ("instance",),
            "Scrapes of a gateway or replica by the control plane that failed or timed out.",
        ),
        Metric(
            LEADER,
            "gauge",
            ("holder",),
            "1 while this control plane holds the registry's leader lease and acts, 0 while it follows.",
        ),
        Metric(
            DRIFT_PSI,
            "gauge",
            ("model", "version", "feature"),
            "Population stability index of a feature's serving inputs against the registration sample.",
        ),
        Metric(
            DRIFT_MEAN_SHIFT,
            "gauge",
            ("model", "version", "feature"),
            "Shift of a feature's serving mean from the registration sample's, in its standard deviations.",
        ),
        Metric(
            ALERTS_FIRING,
            "gauge",
            ("alert", "deployment", "severity"),
            "1 while an alert rule fires.",
        ),
        Metric(
            COMPARISONS,
            "counter",
            ("model", "version", "result"),
            "Answers of a rollout's stable and candidate versions to the same request compared by a gateway "
            "(shadow, canary compare), by result (agree, values_differ, labels_differ, failed); version: the "
            "candidate's.",
        ),
        Metric(
            COMPARISON_DIFFERENCE,
            "histogram",
            _MV,
            "Largest absolute difference between the float outputs of one comparison; version: the "
            "candidate's.",
        ),
        Metric(
            SHADOW_REQUESTS,
            "counter",
            ("model", "version", "code"),
            "Requests a gateway also sent to a second version (mirrored to a shadow candidate, or sent to "
            "stable to compare), by the version sent to and HTTP code; not client requests: not in "
            "conveyor_requests_total.",
        ),
        Metric(
            SHADOW_DURATION,
            "histogram",
            _MV,
            "Time from a mirrored or compared send to its answer, in seconds.",
        ),
        Metric(
            SHADOW_DROPPED,
            "counter",
            _MV,
            "Mirrored or compared sends a gateway dropped (it had 64 in flight), by the version they were "
            "for.",
        ),
        Metric(
            CACHE_REQUESTS,
            "counter",
            ("model", "version", "result"),
            "Inference requests a replica looked up in the version's response cache, by result (hit: "
            "answered from the cache without running the model; miss).",
        ),
        Metric(CACHE_ENTRIES, "gauge", _MV, "Answers held in the version's response cache."),
        Metric(
            CACHE_BYTES,
            "gauge",
            _MV,
            "Bytes the version's response cache holds: its answers and a fixed overhead per entry.",
        ),
    )
}
PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes")
"""prometheus_client's ProcessCollector (Linux): also process_virtual_memory_bytes, process_open_fds, ..."""

# Histogram bucket upper bounds (seconds, rows). Requests: 100 µs to 10 s. Queue and model times start lower:
# a small model's run takes tens of microseconds.
REQUEST_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
RUN_BUCKETS = (0.00001, 0.000025, 0.00005, *REQUEST_BUCKETS)
DIFFERENCE_BUCKETS = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)
"""Largest absolute differences of compared float outputs: exactly equal (0), rounding, and real changes."""
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)

REGISTRY = CollectorRegistry(auto_describe=True)
"""The process's registry: ``GET /metrics`` serves it. Add a collector with ``REGISTRY.register(c)``."""
ProcessCollector(registry=REGISTRY)
