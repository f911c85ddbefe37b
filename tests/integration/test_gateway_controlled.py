"""``conveyor gateway`` as a real process over two real replica processes, its table pushed by a stand-in
control plane: the table applies, a version switch under load loses nothing, reports acknowledge, requests are
held for a replica, and the gateway outlives the control plane and re-fetches when it returns."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.control_plane import FakeControlPlane
from tests.fixtures.processes import ProcessGroup, free_port, output_of, wait_http_ok

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
HOLD = {"timeoutSeconds": 10.0, "maxRequests": 5}


@dataclass
class Stack:
    control: FakeControlPlane
    url: str
    r1: str  # serves tiny:1
    r2: str  # serves tiny:2
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0

    def publish(self, *routes: dict[str, Any], epoch: str = "epoch-1") -> int:
        """Push a table and wait until the gateway reports it applied; its generation."""
        self.generation += 1
        self.control.publish({"epoch": epoch, "generation": self.generation, "routes": list(routes)})
        gen = self.generation
        wait_for(lambda: self.acknowledged(epoch, gen))
        return gen

    def acknowledged(self, epoch: str, generation: int) -> bool:
        return any((r["epoch"], r["generation"]) == (epoch, generation) for r in self.control.reports[-5:])

    def infer(self, version: str | None = None, timeout: float = 10.0) -> httpx.Response:
        path = "/v2/models/tiny" + (f"/versions/{version}" if version else "") + "/infer"
        return httpx.post(self.url + path, json=BODY, timeout=timeout)


def route(version: str, *addresses: str, default: bool = False, hold: Any = None) -> dict[str, Any]:
    replicas = [{"id": f"tiny-{i}", "address": a} for i, a in enumerate(addresses)]
    return {
        "name": "tiny",
        "version": version,
        "deployment": "tiny",
        "revision": int(version),
        "default": default,
        "replicas": replicas,
        "hold": hold,
    }


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _start_and_wait(group: ProcessGroup, args: list[str], line: str) -> None:
    proc = group.start(args)
    deadline = time.monotonic() + 30
    while line not in output_of(proc):
        assert proc.poll() is None and time.monotonic() < deadline, output_of(proc)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(logreg_onnx: Path) -> Iterator[Stack]:
    group = ProcessGroup()
    control = FakeControlPlane()
    run_dir = Path(tempfile.mkdtemp(prefix="cv-gw-"))  # short: unix socket paths are limited to ~100 bytes
    try:
        socks = []
        for version in ("1", "2"):
            sock = f"unix:{run_dir / f'r{version}.sock'}"
            launch = [sys.executable, "-m", "conveyor.server", "--channel", sock]
            _start_and_wait(group, [*launch, "--model", f"tiny:{version}={logreg_onnx}"], "listening on")
            socks.append(sock)
        s = Stack(control, "", socks[0], socks[1], generation=1)
        control.start()
        control.publish({"epoch": "epoch-1", "generation": 1, "routes": [route("1", s.r1, default=True)]})
        port = free_port()
        gateway = [sys.executable, "-m", "conveyor.cli.gateway", "--control-plane", control.url]
        proc = group.start([*gateway, "--port", str(port)], env={"CONVEYOR_HEALTH_INTERVAL_S": "0.2"})
        s.url, s.proc = f"http://127.0.0.1:{port}", proc
        wait_http_ok(f"{s.url}/v2/health/ready", proc, timeout=30)
        assert f"gateway listening on {s.url}" in output_of(proc)
        yield s
    finally:
        control.stop()
        group.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
        leftovers = [p.pid for p in group.procs if p.poll() is None]
        assert not leftovers, f"processes still running after teardown: {leftovers}"


def test_the_pushed_table_is_applied_and_acknowledged_in_reports(stack: Stack) -> None:
    answer = stack.infer()
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    assert stack.infer("2").status_code == 404  # not in the table
    meta = httpx.get(f"{stack.url}/v2/models/tiny").json()
    assert meta["name"] == "tiny" and meta["versions"] == ["1"]
    wait_for(lambda: stack.acknowledged("epoch-1", 1))
    report = stack.control.reports[-1]
    assert report["gateway"].startswith("gw-") and report["url"] == stack.url
    assert (report["epoch"], report["generation"]) == ("epoch-1", 1)
    (r,) = report["routes"]
    assert (r["name"], r["version"], r["held"]) == ("tiny", "1", 0)
    assert r["replicas"] == [{"address": stack.r1, "admitted": True, "inFlight": 0}]


def test_a_version_switch_under_steady_load_loses_no_request(stack: Stack) -> None:
    stack.publish(route("1", stack.r1, default=True), route("2", stack.r2))
    first_report = len(stack.control.reports)
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            while not stop.is_set():
                r = http.post("/v2/models/tiny/infer", json=BODY)
                results.append((r.status_code, r.json().get("model_version")))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.6)
        stack.publish(route("1", stack.r1), route("2", stack.r2, default=True))  # the switch
        time.sleep(0.6)
        switched = len(results)
        stack.publish(route("2", stack.r2, default=True))  # the old version leaves the table
        time.sleep(0.6)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(results) > 100
    assert {status for status, _ in results} == {200}, [r for r in results if r[0] != 200][:3]
    assert {v for _, v in results[:10]} == {"1"} and {v for _, v in results[switched:]} == {"2"}
    during = stack.control.reports_since(first_report)
    in_flight = [r["inFlight"] for report in during for r in report["routes"]]
    assert max(in_flight) >= 1  # the load was seen
    wait_for(lambda: stack.control.reports[-1]["routes"][0]["inFlight"] == 0)  # and back to idle


def test_a_held_request_waits_for_a_table_that_brings_a_replica(stack: Stack) -> None:
    stack.publish(route("2", default=True, hold=HOLD))  # scaled to zero
    start = len(stack.control.reports)
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(stack.infer()))
    waiting.start()
    wait_for(lambda: any(r["routes"][0]["held"] == 1 for r in stack.control.reports_since(start)), timeout=2)
    assert not answers
    stack.publish(route("2", stack.r2, default=True, hold=HOLD))
    waiting.join(10)
    assert answers[0].status_code == 200 and answers[0].json()["model_version"] == "2"


def test_the_gateway_outlives_the_control_plane_and_refetches_when_it_returns(stack: Stack) -> None:
    stack.publish(route("2", stack.r2, default=True))
    stack.control.stop()
    time.sleep(0.5)
    for _ in range(5):
        answer = stack.infer()
        assert answer.status_code == 200 and answer.json()["model_version"] == "2"
    # A restarted control plane: a new epoch, its generations from 1 again.
    table = {"epoch": "epoch-2", "generation": 1, "routes": [route("1", stack.r1, default=True)]}
    stack.control.publish(table)
    stack.control.start()
    wait_for(lambda: stack.infer().json()["model_version"] == "1", timeout=10)
    wait_for(lambda: stack.control.reports[-1]["epoch"] == "epoch-2")


def test_sigterm_finishes_what_was_accepted_and_exits_cleanly(stack: Stack) -> None:
    """Runs last: it stops the module's gateway."""
    assert stack.proc is not None
    answered: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            while stack.proc is not None and stack.proc.poll() is None:
                try:
                    answered.append(http.post("/v2/models/tiny/infer", json=BODY).status_code)
                except httpx.TransportError:  # not accepted: the port or an idle connection closed
                    time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(timeout=15) == 0, output_of(stack.proc)
    for t in threads:
        t.join(10)
    assert answered and set(answered) == {200}
