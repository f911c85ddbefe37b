"""The V2 infer hot path (frontend/hot_path.py) answers exactly as the regular Starlette route does.

A replica process serves a model; each request is sent twice over raw sockets, once plainly (the hot path)
and once with a query string, which only the regular route takes; the answers must match (the date header
aside). Then what the hot path must hand to the regular path or get right on its own: a body arriving after
its head, pipelined requests, HTTP/1.0 and ``Connection: close``, limits, a client that leaves.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from conveyor.observe import trace
from tests.fixtures.replica import running_replica

MAX_BODY = 64 * 1024
X = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
INPUT = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X.ravel().tolist()}
JSON_BODY = orjson.dumps({"id": "body-id", "inputs": [INPUT]})
NO_ID_BODY = orjson.dumps({"inputs": [INPUT]})
Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture(scope="module")
def port(logreg_onnx: Path) -> Iterator[int]:
    with running_replica({"clf": logreg_onnx}, "--max-body-bytes", str(MAX_BODY)) as url:
        yield int(url.rsplit(":", 1)[1])


def request(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_answers(
    sock: socket.socket, count: int, timeout: float = 10.0
) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` HTTP/1.1 answers (status, headers without date, body) read from ``sock``."""
    deadline = time.monotonic() + timeout
    data = b""
    answers: list[Answer] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data or len(data) < _answer_end(data):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers: {data[:200]!r}"
            data += chunk
        end = _answer_end(data)
        head, body = data[:end].split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        headers.pop("date", None)
        answers.append((int(lines[0].split(" ")[1]), headers, body))
        data = data[end:]
    assert data == b"", f"more than {count} answers: {data[:200]!r}"
    return answers


def _answer_end(data: bytes) -> int:
    if b"\r\n\r\n" not in data:
        return 1 << 30
    head, _ = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return len(head) + 4 + length


def exchange(port: int, raw: bytes, count: int = 1) -> list[Answer]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return read_answers(sock, count)


def hot_and_regular(port: int, path: str, body: bytes, *headers: str) -> tuple[Answer, Answer]:
    """The same request through the hot path and through the regular route (a query string sends it there)."""
    [hot] = exchange(port, request(path, body, *headers))
    [regular] = exchange(port, request(path + "?r=1", body, *headers))
    # Each answer names its own span: a new span id, in the client's trace if it sent a traceparent.
    spans = hot[1].pop("traceparent"), regular[1].pop("traceparent")
    assert all(trace.valid(s) for s in spans) and spans[0] != spans[1], spans
    sent = next((h.split(": ", 1)[1] for h in headers if h.lower().startswith("traceparent:")), None)
    if trace.valid(sent):
        assert {trace.trace_id(s) for s in spans} == {trace.trace_id(sent)}
    return hot, regular


def binary_body() -> tuple[bytes, int]:
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    return header + X.tobytes(), len(header)


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v2/models/clf/infer", JSON_BODY, ["Content-Type: application/json", "X-Request-Id: client-7"]),
        ("/v2/models/clf/infer", NO_ID_BODY, []),
        ("/v2/models/clf/infer", JSON_BODY, [f"traceparent: 00-{'ab' * 16}-{'cd' * 8}-01"]),
        (
            "/v2/models/clf/versions/1/infer",
            JSON_BODY,
            [],
        ),  # 404, no id header  # the generated id: compared by shape below
        ("/v2/models/nope/infer", JSON_BODY, ["X-Request-Id: r1"]),  # 404
        ("/v2/models/clf/infer", JSON_BODY, ["Content-Type: text/plain", "X-Request-Id: r2"]),  # 415
        ("/v2/models/clf/infer", b"{not json", ["X-Request-Id: r3"]),  # 400
        (
            "/v2/models/clf/infer",
            JSON_BODY,
            ["Inference-Header-Content-Length: x", "X-Request-Id: r4"],
        ),  # 400
        ("/v2/models/clf/infer", JSON_BODY.replace(b"[1,4]", b"[1,5]"), ["X-Request-Id: r5"]),  # shape
    ],
)
def test_the_hot_path_answers_as_the_regular_route(
    port: int, path: str, body: bytes, headers: list[str]
) -> None:
    hot, regular = hot_and_regular(port, path, body, *headers)
    if body == NO_ID_BODY:  # generated ids differ between two requests; their form must not
        hot_id, regular_id = hot[1].pop("x-request-id"), regular[1].pop("x-request-id")
        assert hot_id.split("-")[0] == regular_id.split("-")[0], (hot_id, regular_id)
        hot = (hot[0], hot[1], hot[2].replace(hot_id.encode(), regular_id.encode()))  # the body has it too
    assert hot == regular
    assert hot[0] == 200 or orjson.loads(hot[2])["error"]


def test_binary_tensors_on_the_hot_path(port: int) -> None:
    body, json_length = binary_body()
    hot, regular = hot_and_regular(
        port,
        "/v2/models/clf/infer",
        body,
        "Content-Type: application/octet-stream",
        f"Inference-Header-Content-Length: {json_length}",
        "X-Request-Id: bin-1",
    )
    assert hot == regular
    status, answer_headers, answer = hot
    assert status == 200 and answer_headers["content-type"] == "application/octet-stream"
    header_end = int(answer_headers["inference-header-content-length"])
    doc = orjson.loads(answer[:header_end])
    probs = next(o for o in doc["outputs"] if o["name"] == "probabilities")
    raw = answer[header_end:][: probs["parameters"]["binary_data_size"]]
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(values) == 3 and abs(sum(values) - 1.0) < 1e-5


def test_a_body_that_arrives_after_its_head_is_answered(port: int) -> None:
    raw = request("/v2/models/clf/infer", JSON_BODY, "X-Request-Id: split")
    head_end = raw.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw[: head_end + 10])  # the head and a little of the body
        time.sleep(0.2)
        sock.sendall(raw[head_end + 10 :])
        [(status, headers, body)] = read_answers(sock, 1)
        assert status == 200 and headers["x-request-id"] == "split"
        sock.sendall(
            request("/v2/models/clf/infer", JSON_BODY, "X-Request-Id: next")
        )  # the connection lives on
        [(status, headers, _)] = read_answers(sock, 1)
        assert status == 200 and headers["x-request-id"] == "next"
    assert orjson.loads(body)["id"] == "body-id"


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    ids = [f"p{i}" for i in range(6)]
    raw = b"".join(
        request("/v2/models/clf/infer" + ("?r=1" if i % 3 == 2 else ""), JSON_BODY, f"X-Request-Id: {rid}")
        for i, rid in enumerate(ids)
    )
    answers = exchange(port, raw, count=len(ids))
    assert [a[1]["x-request-id"] for a in answers] == ids
    assert all(a[0] == 200 for a in answers)


@pytest.mark.parametrize(("version", "headers"), [("1.0", []), ("1.1", ["Connection: close"])])
def test_a_connection_not_kept_alive_is_closed_after_its_answer(
    port: int, version: str, headers: list[str]
) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request("/v2/models/clf/infer", JSON_BODY, *headers, version=version))
        [(status, answer_headers, _)] = read_answers(sock, 1)
        assert status == 200 and answer_headers.get("connection") == "close"
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server


def test_limits_still_hold(port: int) -> None:
    big = b" " * (MAX_BODY + 1)
    [(status, _, body)] = exchange(port, request("/v2/models/clf/infer", big))
    assert status == 413 and b"exceeds the limit" in body


def test_a_client_that_leaves_does_not_disturb_the_next(port: int) -> None:
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request("/v2/models/clf/infer", JSON_BODY))
    [(status, _, _)] = exchange(port, request("/v2/models/clf/infer", JSON_BODY))
    assert status == 200
