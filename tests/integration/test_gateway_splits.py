"""A real gateway process over two real replica processes of two different model versions, its table (with
a split) pushed by a stand-in control plane: weights are honoured, an A/B user keeps one variant over REST
and gRPC, and in shadow mode every caller gets stable's answer while /metrics counts the comparisons."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.control_plane import FakeControlPlane
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, free_port, output_of, wait_http_ok
from tests.fixtures.replica import start_channel_replica

X = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
BODY = {"inputs": [{"name": "input", "shape": [4, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
AB = {"header": "x-variant", "headerValue": "beta", "userHeader": "x-user-id", "cookie": "uid"}


@dataclass
class Stack:
    control: FakeControlPlane
    url: str
    grpc: str
    sockets: dict[str, str]
    generation: int = 0

    def publish(self, wait: bool = True, **split: Any) -> None:
        """A table routing tiny:1 (default) and tiny:2, with ``split`` when given; returns once applied."""
        self.generation += 1
        routes = [
            {
                "name": "tiny",
                "version": v,
                "default": v == "1",
                "replicas": [{"id": f"tiny-{v}", "address": a}],
                "hold": None,
            }
            for v, a in self.sockets.items()
        ]
        splits = [{"name": "tiny", "stable": "1", "candidate": "2", **split}] if split else []
        table = {"epoch": "e", "generation": self.generation, "routes": routes, "splits": splits}
        self.control.publish(table)
        if wait:
            wait_for(lambda: any(r["generation"] == self.generation for r in self.control.reports[-3:]))

    def metrics(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        }


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, logreg_onnx: Path) -> Iterator[Stack]:
    group = ProcessGroup()
    control = FakeControlPlane()
    run_dir = Path(tempfile.mkdtemp(prefix="cv-split-"))  # short: unix socket paths are limited
    try:
        models = {"1": build_logreg(tmp_path_factory.mktemp("v1") / "v1.onnx", seed=7), "2": logreg_onnx}
        sockets = {}
        for version, model in models.items():
            start_channel_replica(group, f"tiny:{version}", model, run_dir / f"r{version}.sock")
            sockets[version] = f"unix:{run_dir / f'r{version}.sock'}"
        port, grpc_port = free_port(), free_port()
        s = Stack(control, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", sockets)
        control.start()
        s.publish(wait=False)  # no gateway yet
        args = ["-m", "conveyor.cli.gateway", "--control-plane", control.url, "--port", str(port)]
        proc = group.start([sys.executable, *args, "--grpc-port", str(grpc_port)])
        wait_http_ok(f"{s.url}/v2/health/ready", proc, timeout=30)
        s.publish()
        yield s
        assert "Traceback" not in output_of(proc), output_of(proc)
    finally:
        control.stop()
        group.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
        leftovers = [p.pid for p in group.procs if p.poll() is None]
        assert not leftovers, f"processes still running after teardown: {leftovers}"


def _version(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> str:
    answer = client.post(url, json=BODY, headers=headers)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"])


def test_the_weight_is_honoured_for_bare_requests_only(stack: Stack) -> None:
    stack.publish(weight=30)
    with httpx.Client(timeout=10) as client:
        versions = [_version(client, f"{stack.url}/v2/models/tiny/infer") for _ in range(400)]
        assert 80 <= versions.count("2") <= 160, versions.count("2")  # 120 expected; 4.4 sd either side
        pinned = {_version(client, f"{stack.url}/v2/models/tiny/versions/1/infer") for _ in range(20)}
        assert pinned == {"1"}
    stack.publish(weight=100)
    with httpx.Client(timeout=10) as client:
        assert {_version(client, f"{stack.url}/v2/models/tiny/infer") for _ in range(20)} == {"2"}


def _triton_version(client: Any, mod: Any, user: str) -> str:
    """The version that answered one tritonclient request (``mod``: tritonclient.http or .grpc)."""
    inp = mod.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    response = client.infer("tiny", [inp], headers={"x-user-id": user}).get_response()
    return str(response["model_version"] if isinstance(response, dict) else response.model_version)


def test_ab_keeps_each_user_on_one_variant_over_rest_and_grpc(stack: Stack) -> None:
    stack.publish(weight=50, ab=AB, seed="rollout-1")
    rest = triton.InferenceServerClient(stack.url.removeprefix("http://"))
    grpc = tg.InferenceServerClient(stack.grpc)
    try:
        seen = {
            f"user-{i}": {_triton_version(c, mod, f"user-{i}") for c, mod in ((rest, triton), (grpc, tg))}
            for i in range(30)
        }
    finally:
        rest.close()
        grpc.close()
    assert all(len(v) == 1 for v in seen.values()), seen  # sticky, and the same over both protocols
    assert set().union(*seen.values()) == {"1", "2"}
    with httpx.Client(timeout=10) as client:
        url = f"{stack.url}/v2/models/tiny/infer"
        assert _version(client, url, {"x-variant": "beta"}) == "2"
        assert _version(client, url + "?path=regular", {"x-variant": "beta"}) == "2"  # not the hot path
        assert {_version(client, url) for _ in range(20)} == {"1"}  # no user id: stable
        assert {_version(client, url, {"cookie": "uid=user-3"}) for _ in range(5)} == seen["user-3"]


def _total(samples: dict[tuple[tuple[str, str], ...], float], **match: str) -> float:
    return sum(n for labels, n in samples.items() if match.items() <= dict(labels).items())


def test_shadow_answers_are_always_stables_and_the_comparisons_are_counted(stack: Stack) -> None:
    before = stack.metrics("conveyor_comparisons_total")
    candidate_before = _total(stack.metrics("conveyor_requests_total"), model="tiny", version="2")
    stack.publish(mirror=100, tolerance=1e-5)
    with httpx.Client(timeout=10) as client:
        want = client.post(f"{stack.url}/v2/models/tiny/versions/1/infer", json=BODY).json()["outputs"]
        for _ in range(50):
            answer = client.post(f"{stack.url}/v2/models/tiny/infer", json=BODY).json()
            assert answer["model_version"] == "1" and answer["outputs"] == want

    wait_for(lambda: _total(stack.metrics("conveyor_comparisons_total")) - _total(before) == 50)
    compared = stack.metrics("conveyor_comparisons_total")
    # Two different models: every comparison found a difference, counted under the candidate's version.
    assert _total(compared, version="2") - _total(before, version="2") == 50
    assert _total(compared, result="agree") == _total(before, result="agree")
    assert _total(stack.metrics("conveyor_shadow_requests_total"), version="2", code="200") >= 50
    assert _total(stack.metrics("conveyor_comparison_max_abs_difference_count"), version="2") >= 50
    # Mirrored sends are not client requests: the gateway's request counts of the candidate did not move.
    assert _total(stack.metrics("conveyor_requests_total"), model="tiny", version="2") == candidate_before
    stack.publish()
