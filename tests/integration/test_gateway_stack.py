"""``conveyor serve --replicas 2``: the gateway and its supervised replica processes, from the real CLI.

V2 clients through the gateway, a replica killed under load (no failed request, replaced), drain on SIGTERM,
and no process left behind, even when the gateway itself is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tg
import tritonclient.http as triton

import conveyor
from conveyor.gateway.channel import ChannelUpstream
from conveyor.settings import Settings
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, children, conveyor_exe, free_port, wait_http_ok

X = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
BODY = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, logreg_onnx: Path) -> dict[str, Path]:
    """A registry with lr:1 (alias production) and lr:2, two different models."""
    d = tmp_path_factory.mktemp("stack")
    settings = Settings(home=d / "home")
    v1 = build_logreg(d / "v1.onnx", seed=7)
    conveyor.register("lr", v1, aliases=["production"], settings=settings)
    conveyor.register("lr", logreg_onnx, settings=settings)
    return {"home": d / "home", "1": v1, "2": logreg_onnx}


def _start(group: ProcessGroup, home: dict[str, Path], *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {"CONVEYOR_HOME": str(home["home"]), "CONVEYOR_HEALTH_INTERVAL_S": "0.2"}
    args = [conveyor_exe(), "serve", "lr@production", "lr:2", "--replicas", "2", "--port", str(port), *extra]
    proc = group.start(args, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/v2/health/ready", proc, timeout=60)
    return proc, url


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def stack(home: dict[str, Path], grpc_port: int) -> Iterator[str]:
    group = ProcessGroup()
    try:
        _, url = _start(group, home, "--grpc-port", str(grpc_port))
        yield url
    finally:
        group.stop_all()


def _want(path: Path) -> tuple[np.ndarray, np.ndarray]:
    label, proba = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": X})
    return label, proba


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("version", "served"), [("", "2"), ("1", "1"), ("2", "2"), ("production", "1")])
def test_tritonclient_through_the_gateway_routes_by_version_and_equals_onnxruntime(
    stack: str, home: dict[str, Path], version: str, served: str, binary: bool
) -> None:
    client = triton.InferenceServerClient(stack.removeprefix("http://"))
    try:
        inp = triton.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        outs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = client.infer("lr", [inp], model_version=version, outputs=outs, request_id="t-1")
        label, proba = _want(home[served])
        np.testing.assert_array_equal(result.as_numpy("label"), label)
        np.testing.assert_allclose(result.as_numpy("probabilities"), proba, rtol=1e-6)
        assert result.get_response()["model_version"] == served and result.get_response()["id"] == "t-1"
        assert client.is_server_ready() and client.is_model_ready("lr", version)
        assert client.get_model_metadata("lr", version)["versions"] == ["1", "2"]
    finally:
        client.close()


@pytest.mark.parametrize(("version", "served"), [("", "2"), ("production", "1")])
def test_tritonclient_grpc_through_the_gateway(
    stack: str, grpc_port: int, home: dict[str, Path], version: str, served: str
) -> None:
    client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        inp = tg.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        result = client.infer("lr", [inp], model_version=version, request_id="g-1")
        label, proba = _want(home[served])
        np.testing.assert_array_equal(result.as_numpy("label"), label)
        np.testing.assert_allclose(result.as_numpy("probabilities"), proba, rtol=1e-6)
        assert result.get_response().model_version == served and result.get_response().id == "g-1"
        assert client.is_model_ready("lr", version)
    finally:
        client.close()


def test_request_id_is_propagated_and_errors_keep_their_status(stack: str) -> None:
    r = httpx.post(f"{stack}/v2/models/lr/versions/1/infer", json=BODY, headers={"x-request-id": "abc-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-1" and r.json()["id"] == "abc-1"
    missing = httpx.post(f"{stack}/v2/models/lr/versions/9/infer", json=BODY)
    assert missing.status_code == 404 and "served versions: 1, 2" in missing.json()["error"]
    bad = httpx.post(f"{stack}/v2/models/lr/infer", json={"inputs": [{**BODY["inputs"][0], "name": "nope"}]})
    assert bad.status_code == 400 and "nope" in bad.json()["error"]


async def _load(url: str, stop: asyncio.Event, clients: int = 12) -> tuple[int, list[str]]:
    """Closed-loop load until ``stop``; returns (ok count, failures)."""
    ok, failures = 0, []

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok
        while not stop.is_set():
            try:
                r = await client.post(f"{url}/v2/models/lr/infer", json=BODY)
                if r.status_code == 200:
                    ok += 1
                else:
                    failures.append(f"{r.status_code} {r.text}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return ok, failures


async def _replaced(gateway_pid: int, old: set[int], count: int) -> dict[int, str]:
    """Wait until ``count`` replicas run that are not in ``old`` and answer health probes on their socket."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # A child forked but not yet exec'd still shows the gateway's command line: not a replica yet.
        fresh = {p: c for p, c in children(gateway_pid).items() if p not in old and "--channel " in c}
        if len(fresh) >= count:
            socks = [c.split("--channel ")[1].split()[0] for c in fresh.values()]
            if all([await ChannelUpstream(s).probe() for s in socks]):
                await asyncio.sleep(0.6)  # three of the gateway's 0.2 s probe rounds: admitted by now
                return fresh
        await asyncio.sleep(0.1)
    raise AssertionError("replica not replaced within 30 s")


def test_kill_9_of_replicas_under_load_fails_no_request_and_they_are_replaced(
    processes: ProcessGroup, home: dict[str, Path]
) -> None:
    gateway, url = _start(processes, home)
    first = children(gateway.pid)
    assert len(first) == 2
    a, b = sorted(first)

    async def run() -> tuple[int, list[str], dict[int, str]]:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(url, stop))
        await asyncio.sleep(1.0)
        os.kill(a, signal.SIGKILL)
        replacement = await _replaced(gateway.pid, set(first), 1)
        # The replacement must be serving: with the other original gone too, it carries the load alone.
        os.kill(b, signal.SIGKILL)
        await asyncio.sleep(1.0)
        stop.set()
        ok, failures = await load
        return ok, failures, replacement

    ok, failures, replacement = asyncio.run(run())
    assert failures == [] and ok > 200
    assert len(replacement) == 1 and not set(replacement) & {a, b}
    assert wait_until_children(gateway.pid, 2, exclude={a, b})


def wait_until_children(pid: int, count: int, exclude: set[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(set(children(pid)) - exclude) == count:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stop_drains_in_flight_requests_and_leaves_no_process(
    processes: ProcessGroup, home: dict[str, Path], sig: signal.Signals
) -> None:
    # Batches wait up to 0.5 s to fill: requests are still in flight when SIGTERM arrives.
    gateway, url = _start(processes, home, "--max-batch-size", "64", "--max-queue-delay-us", "500000")
    replicas = list(children(gateway.pid))

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            sent = [
                asyncio.create_task(client.post(f"{url}/v2/models/lr/infer", json=BODY)) for _ in range(8)
            ]
            await asyncio.sleep(0.2)
            gateway.send_signal(sig)
            return [(await t).status_code for t in sent]

    assert asyncio.run(run()) == [200] * 8
    assert gateway.wait(timeout=30) == 0
    assert _gone(replicas, timeout=5), f"replicas left running: {children(gateway.pid)}"


def test_replicas_exit_when_the_gateway_is_killed(processes: ProcessGroup, home: dict[str, Path]) -> None:
    gateway, _ = _start(processes, home)
    replicas = list(children(gateway.pid))
    gateway.kill()
    gateway.wait()
    assert _gone(replicas, timeout=10), "replicas outlived their gateway"


def test_one_replica_runs_in_the_gateway_process_and_stops_cleanly(
    processes: ProcessGroup, home: dict[str, Path]
) -> None:
    port = free_port()
    env = {"CONVEYOR_HOME": str(home["home"])}
    proc = processes.start([conveyor_exe(), "serve", "lr@production", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/v2/health/ready", proc, timeout=60)
    assert children(proc.pid) == {}  # in-process placement: no replica process
    r = httpx.post(f"{url}/v2/models/lr/versions/production/infer", json=BODY, headers={"x-request-id": "q"})
    assert r.status_code == 200 and r.json()["model_version"] == "1" and r.headers["x-request-id"] == "q"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
