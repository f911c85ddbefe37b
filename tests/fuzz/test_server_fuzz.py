"""Hypothesis-made V2 bodies posted to a real replica process on loopback (its hot path and regular path):
never a 5xx, every 4xx is {"error": ...}, and the server answers the next request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fixtures.models import LOGREG_BODY
from tests.fixtures.replica import running_replica
from tests.fuzz.strategies import FUZZ_SERVER, binary_bodies, v2_bodies

EMPTY_BUT_HUGE = (
    b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [0, 4611686018427387904], "data": []}]}'
)


@pytest.fixture(scope="module")
def server(logreg_onnx: Path, typed_onnx: Path) -> Iterator[httpx.Client]:
    models = {"clf:1": logreg_onnx, "typed:1": typed_onnx}
    with running_replica(models) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert isinstance(r.json().get("error"), str), r.text


@FUZZ_SERVER
@given(st.sampled_from(["clf", "typed"]), v2_bodies(), binary_bodies())
@example("clf", EMPTY_BUT_HUGE, (EMPTY_BUT_HUGE, len(EMPTY_BUT_HUGE)))  # was a 500 (numpy's ValueError)
@example(
    "typed",
    b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [[[['
    + b"[" * 80
    + b'"a"'
    + b"]" * 84
    + b"}]}",
    (b"", 0),
)
def test_any_body_posted_to_a_replica_gets_an_answer_or_a_4xx_error(
    server: httpx.Client, model: str, body: bytes, binary: tuple[bytes, int | None]
) -> None:
    path = f"/v2/models/{model}/infer"
    check(server.post(path, content=body, headers={"content-type": "application/json"}))
    content, json_length = binary
    headers = {"content-type": "application/octet-stream"}
    if json_length is not None:
        headers["inference-header-content-length"] = str(json_length)
    check(server.post(path, content=content, headers=headers))
    assert server.post("/v2/models/clf/infer", content=LOGREG_BODY).status_code == 200
