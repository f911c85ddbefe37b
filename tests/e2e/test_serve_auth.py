"""`conveyor serve` stays open on loopback, refuses another address without --token-file or --public, and
with --token-file answers only callers that send one of its tokens (REST and gRPC, tritonclient)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok

pytestmark = pytest.mark.timeout(180)
BODY = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'
JSON = {"content-type": "application/json"}


def test_serving_beyond_loopback_needs_a_token_file_or_public(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = build_logreg(tmp_path / "clf.onnx")
    args = [conveyor_exe(), "serve", str(model), "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve on 0.0.0.0 without authentication" in lines[0]
    assert "--token-file" in lines[0] and "--public" in lines[0]
    both = subprocess.run(
        [*args, "--public", "--token-file", str(tmp_path / "t")], env=cli_env, capture_output=True, text=True
    )
    assert both.returncode == 2 and "contradict" in both.stderr


def test_with_a_token_file_only_its_tokens_are_answered_over_rest_and_grpc(
    tmp_path: Path, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    model = build_logreg(tmp_path / "clf.onnx")
    tokens = tmp_path / "tokens"
    tokens.write_text("# the web app\nweb-0123456789abcdef\n")
    port, grpc_port = free_port(), free_port()
    proc = processes.start(
        [
            conveyor_exe(),
            "serve",
            str(model),
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--token-file",
            str(tokens),
        ],
        env=cli_env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/v2/health/ready", proc)
    url = f"{base}/v2/models/clf/infer"
    assert httpx.post(url, content=BODY, headers=JSON).status_code == 401
    wrong = httpx.post(url, content=BODY, headers={**JSON, "authorization": "Bearer web-0000000000000000"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid token"}
    ok = httpx.post(url, content=BODY, headers={**JSON, "authorization": "Bearer web-0123456789abcdef"})
    assert ok.status_code == 200, ok.text
    assert httpx.get(f"{base}/v2/health/live").status_code == 200  # health needs no token

    client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        x = tg.InferInput("input", [1, 4], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3, 4]], dtype=np.float32))
        with pytest.raises(InferenceServerException) as refused:
            client.infer("clf", [x])
        assert str(refused.value.status()) == "StatusCode.UNAUTHENTICATED"
        result = client.infer("clf", [x], headers={"authorization": "Bearer web-0123456789abcdef"})
        assert result.as_numpy("label").tolist() == ok.json()["outputs"][0]["data"]
    finally:
        client.close()
