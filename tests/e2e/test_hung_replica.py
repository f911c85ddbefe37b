"""`conveyor serve --replicas 2` under hey load (REST) and a gRPC client, one replica stopped with SIGSTOP:
the requests already sent to it are answered by the other replica within the liveness bound, none fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.grpc as tg

from conveyor.settings import Settings
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, children, conveyor_exe, free_port, wait_http_ok
from tests.fixtures.stack import Load

pytestmark = pytest.mark.timeout(180)

SETTINGS = Settings()
# A request sent to a replica that stops answering fails over after at most the liveness window (ping after
# this much silence, then the pong timeout), then takes one inference on the other replica. The margin is for
# a loaded 2-core machine; without the liveness check such a request waits for the 30 s request timeout.
WINDOW_S = (SETTINGS.channel_ping_after_ms + SETTINGS.channel_pong_timeout_ms) / 1000
BOUND_S = WINDOW_S + 1.0
X = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], np.float32)
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
)


@dataclass
class Serve:
    url: str
    grpc: str
    replica_pids: list[int]


@pytest.fixture
def serve(processes: ProcessGroup, tmp_path: Path, cli_env: dict[str, str]) -> Iterator[Serve]:
    model = build_logreg(tmp_path / "clf.onnx")
    port, grpc_port = free_port(), free_port()
    args = [conveyor_exe(), "serve", str(model), "--replicas", "2", "--port", str(port)]
    proc = processes.start([*args, "--grpc-port", str(grpc_port)], env=cli_env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/v2/health/ready", proc, timeout=60)
    pids = [pid for pid, cmd in children(proc.pid).items() if "-m conveyor.server " in cmd]
    assert len(pids) == 2, children(proc.pid)
    try:
        yield Serve(url, f"127.0.0.1:{grpc_port}", pids)
    finally:
        for pid in pids:  # a stopped replica would not act on the SIGTERM the teardown sends
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass
class GrpcLoad:
    """Clients in threads, each sending one request after another; every latency and error is kept."""

    target: str
    clients: int = 4
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.clients):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self) -> None:
        client = tg.InferenceServerClient(self.target)
        inp = tg.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    client.infer("clf", [inp], client_timeout=30)
                except Exception as exc:
                    self.errors.append(str(exc))
                self.latencies.append(time.monotonic() - t0)
                time.sleep(0.005)
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)


def test_stopped_replica_under_rest_and_grpc_load_fails_no_request_and_delays_none_past_the_bound(
    serve: Serve,
) -> None:
    hey = Load(f"{serve.url}/v2/models/clf/infer", BODY)
    grpc = GrpcLoad(serve.grpc)
    grpc.start()
    hung = serve.replica_pids[0]
    try:
        time.sleep(1.5)  # load running on both replicas
        os.kill(hung, signal.SIGSTOP)
        time.sleep(4.0)  # past the health checks' ejection (3 failed probes): load on the survivor only
        os.kill(hung, signal.SIGCONT)
        time.sleep(2.0)  # probed back in; requests reach it again
    finally:
        os.kill(hung, signal.SIGCONT)
        grpc.stop()
        result = hey.stop()
    assert result.failed == 0, result.output
    assert result.ok > 500, result.output
    slowest = float(re.search(r"Slowest:\s+([\d.]+) secs", result.output)[1])  # type: ignore[index]
    assert slowest < BOUND_S, (
        f"hey's slowest request took {slowest:.2f}s (bound {BOUND_S:.2f}s)\n{result.output}"
    )
    assert not grpc.errors, grpc.errors[:3]
    assert len(grpc.latencies) > 100
    assert max(grpc.latencies) < BOUND_S, (
        f"slowest gRPC request {max(grpc.latencies):.2f}s (bound {BOUND_S:.2f}s)"
    )
