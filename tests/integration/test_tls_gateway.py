"""`conveyor serve` with a certificate from `conveyor certs dev`: tritonclient over HTTPS and over gRPC with
TLS get ONNX Runtime's answers; plain HTTP and plaintext gRPC sent to the TLS ports fail cleanly, and the
server keeps serving with nothing in its log."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from tests.fixtures.processes import ProcessGroup
from tests.fixtures.tls import TlsServer, start_tls_serve

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], dtype=np.float32)


@pytest.fixture
def tls_server(processes: ProcessGroup, logreg_onnx: Path, tmp_path: Path) -> TlsServer:
    return start_tls_serve(processes, logreg_onnx, tmp_path, {"CONVEYOR_HOME": str(tmp_path / "home")})


def _expected(model: Path) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["probabilities"], {"input": X})[0])


def test_serve_announces_https_urls(tls_server: TlsServer) -> None:
    log = tls_server.log()
    assert f"listening on {tls_server.url}" in log
    assert f"{tls_server.url}/v2/models/" in log
    assert "http://" not in log


def test_tritonclient_over_https_gets_onnx_runtime_answers(tls_server: TlsServer, logreg_onnx: Path) -> None:
    client = th.InferenceServerClient(
        f"127.0.0.1:{tls_server.port}", ssl=True, ssl_context_factory=tls_server.trusting
    )
    try:
        for binary in (True, False):
            inp = th.InferInput("input", list(X.shape), "FP32")
            inp.set_data_from_numpy(X, binary_data=binary)
            out = th.InferRequestedOutput("probabilities", binary_data=binary)
            result = client.infer("logreg", [inp], outputs=[out])
            np.testing.assert_allclose(result.as_numpy("probabilities"), _expected(logreg_onnx), rtol=1e-5)
    finally:
        client.close()


def test_tritonclient_grpc_with_tls_gets_onnx_runtime_answers(
    tls_server: TlsServer, logreg_onnx: Path
) -> None:
    client = tg.InferenceServerClient(
        f"localhost:{tls_server.grpc_port}", ssl=True, root_certificates=str(tls_server.certs.ca_file)
    )
    try:
        assert client.is_server_ready()
        inp = tg.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        result = client.infer("logreg", [inp])
        np.testing.assert_allclose(result.as_numpy("probabilities"), _expected(logreg_onnx), rtol=1e-5)
    finally:
        client.close()


def _plain_http_answer(port: int) -> bytes:
    """What a plain HTTP request to the TLS port gets back before the connection ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        try:
            while chunk := s.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def test_plain_http_to_the_tls_port_is_closed_and_the_server_keeps_serving(tls_server: TlsServer) -> None:
    for _ in range(3):
        answer = _plain_http_answer(tls_server.port)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/v2/health/live", timeout=5)
    live = httpx.get(f"{tls_server.url}/v2/health/live", verify=tls_server.trusting(), timeout=5)
    assert live.status_code == 200
    assert tls_server.proc.poll() is None
    log = tls_server.log()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_plaintext_grpc_to_the_tls_port_fails_and_tls_grpc_still_answers(tls_server: TlsServer) -> None:
    plain = tg.InferenceServerClient(f"127.0.0.1:{tls_server.grpc_port}")
    try:
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            plain.is_server_live(client_timeout=5)
    finally:
        plain.close()
    secure = tg.InferenceServerClient(
        f"127.0.0.1:{tls_server.grpc_port}", ssl=True, root_certificates=str(tls_server.certs.ca_file)
    )
    try:
        assert secure.is_server_live()
    finally:
        secure.close()
    assert "Traceback" not in tls_server.log()


def test_a_client_without_the_dev_ca_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/v2/health/live", verify=ssl.create_default_context(), timeout=5)
