"""What ``make bench`` runs: the rows (one server configuration each), the models and the load settings.

Adding a server configuration is one line in ROWS. ``--servers NAME`` selects a row by its exact name, or
every row whose name starts with ``NAME-`` (so ``conveyor`` selects all Conveyor rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import wire
from servers import BentoML, ConveyorGateway, ConveyorReplica, ConveyorUp, Lean, MLServer, RayServe, Server


@dataclass
class Row:
    name: str
    server: Server
    protocol: str  # what the load and checks speak to it
    wire_format: str | None = None  # overrides the server's own wire format (e.g. V2 binary)

    def __post_init__(self) -> None:
        if self.wire_format is not None:
            self.server.wire_format = self.wire_format


ROWS = [
    Row("conveyor", ConveyorReplica(note="direct replica, batching default"), "V2 JSON"),
    Row(
        "conveyor-nobatch", ConveyorReplica(max_batch_size=1, note="direct replica, batching off"), "V2 JSON"
    ),
    Row(
        "conveyor-gw-r1",
        ConveyorGateway(replicas=1, placement="process", note="gateway + 1 replica process"),
        "V2 JSON",
    ),
    Row(
        "conveyor-gw-r2",
        ConveyorGateway(replicas=2, placement="process", note="gateway + 2 replica processes"),
        "V2 JSON",
    ),
    Row(
        "conveyor-gw-inproc",
        ConveyorGateway(replicas=1, placement="inprocess", note="replica inside the gateway"),
        "V2 JSON",
    ),
    Row(
        "conveyor-gw-inproc-bin",
        ConveyorGateway(
            replicas=1, placement="inprocess", note="default `conveyor serve`, binary tensor request"
        ),
        "V2 binary",
        wire.V2_BINARY,
    ),
    Row("conveyor-up-r2", ConveyorUp(replicas=2, note="`conveyor up -f`: Deployment, 2 replicas"), "V2 JSON"),
    Row("mlserver", MLServer(note="parallel_workers=0, no batching"), "V2 JSON"),
    Row(
        "mlserver-batch",
        MLServer(
            max_batch_size=32, max_batch_time_s=0.0005, note="parallel_workers=0, adaptive batching 32/500µs"
        ),
        "V2 JSON",
    ),
    Row(
        "mlserver-pw1",
        MLServer(parallel_workers=1, note="MLServer default: 1 inference worker process"),
        "V2 JSON",
    ),
    Row("bentoml", BentoML(note="1 worker, no batching"), "own JSON {x: nested list}"),
    Row("ray", RayServe(note="1 replica, num_cpus=2"), "V2-like JSON (plain route)"),
    Row("lean", Lean(note="Starlette+uvicorn+orjson+ORT inline, 1 thread, no spinning"), "V2 JSON"),
    Row(
        "lean-binary",
        Lean(binary=True, note="same, binary tensor request"),
        "V2 binary",
        wire.V2_BINARY,
    ),
    Row(
        "lean-threadpool",
        Lean(threadpool=True, note="earlier weak reference: thread pool, ORT defaults"),
        "V2 JSON",
    ),
]

MODELS = ["tiny", "mlp", "cnn"]
CONCURRENCY = [1, 32]
DURATION_S = 8.0
WARMUP_S = 2.0


def select(names: list[str] | None) -> list[Row]:
    if not names:
        return ROWS
    unknown = [n for n in names if not any(r.name == n or r.name.startswith(n + "-") for r in ROWS)]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; known: {[r.name for r in ROWS]}")
    return [r for r in ROWS if any(r.name == n or r.name.startswith(n + "-") for n in names)]
