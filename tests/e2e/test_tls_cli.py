"""The CLI and TLS: `conveyor certs dev` makes the files, servers serve them, and the CLI refuses a
certificate it cannot verify with one line and a non-zero exit; --ca or CONVEYOR_TLS_CA_FILE trusts it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port
from tests.fixtures.tls import TlsServer, start_tls_serve, wait_https_ok

UNAVAILABLE = 7


@pytest.fixture
def tls_serve(
    processes: ProcessGroup, logreg_onnx: Path, tmp_path: Path, cli_env: dict[str, str]
) -> TlsServer:
    return start_tls_serve(processes, logreg_onnx, tmp_path, cli_env)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_certs_dev_writes_the_ca_the_certificate_and_a_private_key(cli: CliRunner, tmp_path: Path) -> None:
    out = cli("certs", "dev", "--dir", str(tmp_path / "tls"), "--host", "gw.example.test", "--json")
    files = json.loads(out.stdout)
    assert files["hosts"] == ["localhost", "127.0.0.1", "::1", "gw.example.test"]
    assert stat.S_IMODE(Path(files["key"]).stat().st_mode) == 0o600
    assert Path(files["ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")

    again = cli("certs", "dev", "--dir", str(tmp_path / "tls"), check=False)
    assert again.returncode == 4
    assert "already exists; pass --force" in _one_error_line(again.stderr)
    cli("certs", "dev", "--dir", str(tmp_path / "tls"), "--force")


def test_certs_dev_says_how_to_use_the_files(cli: CliRunner, cli_env: dict[str, str]) -> None:
    out = cli("certs", "dev").stdout
    tls_dir = Path(cli_env["CONVEYOR_HOME"]) / "tls"
    assert f"CONVEYOR_TLS_CERT_FILE={tls_dir / 'server.pem'}" in out
    assert f"CONVEYOR_TLS_KEY_FILE={tls_dir / 'server.key'}" in out
    assert f"CONVEYOR_TLS_CA_FILE={tls_dir / 'ca.pem'}" in out


def test_predict_refuses_an_unknown_certificate_in_one_line(cli: CliRunner, tls_serve: TlsServer) -> None:
    proc = cli("predict", "logreg", "--url", tls_serve.url, "-d", "[[1, 2, 3, 4]]", check=False)
    assert proc.returncode == UNAVAILABLE
    line = _one_error_line(proc.stderr)
    assert line.startswith(f"error: certificate of {tls_serve.url} not trusted: ")
    assert line.endswith("(use --ca or CONVEYOR_TLS_CA_FILE)")


def test_predict_trusts_the_server_with_ca(cli: CliRunner, tls_serve: TlsServer) -> None:
    ca = str(tls_serve.certs.ca_file)
    out = cli("predict", "logreg", "--url", tls_serve.url, "-d", "[[1, 2, 3, 4]]", "--ca", ca, "--json")
    assert [o["name"] for o in json.loads(out.stdout)["outputs"]] == ["label", "probabilities"]


def test_predict_trusts_the_server_with_the_ca_setting(
    cli: CliRunner, cli_env: dict[str, str], tls_serve: TlsServer
) -> None:
    cli_env["CONVEYOR_TLS_CA_FILE"] = str(tls_serve.certs.ca_file)
    out = cli("predict", "logreg", "--url", tls_serve.url, "-d", "[[1, 2, 3, 4]]", "--json")
    assert json.loads(out.stdout)["model_name"] == "logreg"


def test_a_control_plane_serving_tls_is_verified_by_the_cli(
    cli: CliRunner, cli_env: dict[str, str], processes: ProcessGroup, tmp_path: Path
) -> None:
    tls = tmp_path / "tls"
    cli("certs", "dev", "--dir", str(tls))
    port = free_port()
    args = [conveyor_exe(), "server", "--api-port", str(port)]
    args += ["--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key")]
    proc = processes.start(args, env=cli_env)
    url = f"https://127.0.0.1:{port}"
    wait_https_ok(f"{url}/api/v1/health", tls / "ca.pem", proc)

    refused = cli("get", "deployments", "--url", url, check=False)
    assert refused.returncode == UNAVAILABLE
    assert _one_error_line(refused.stderr).startswith(f"error: certificate of {url} not trusted: ")

    listed = cli("get", "deployments", "--url", url, "--ca", str(tls / "ca.pem"), "--json")
    assert "deployments" in json.loads(listed.stdout)


def test_a_certificate_without_its_key_stops_serve_before_it_starts(cli: CliRunner, tmp_path: Path) -> None:
    cli("certs", "dev", "--dir", str(tmp_path / "tls"))
    cert = str(tmp_path / "tls" / "server.pem")
    proc = cli("serve", "model.onnx", "--tls-cert", cert, check=False)
    assert proc.returncode == 2
    assert "without its key: set --tls-key or CONVEYOR_TLS_KEY_FILE too" in _one_error_line(proc.stderr)


def test_a_key_that_does_not_match_is_named(cli: CliRunner, tmp_path: Path) -> None:
    cli("certs", "dev", "--dir", str(tmp_path / "a"))
    cli("certs", "dev", "--dir", str(tmp_path / "b"))
    key = tmp_path / "b" / "server.key"
    proc = cli("up", "--tls-cert", str(tmp_path / "a" / "server.pem"), "--tls-key", str(key), check=False)
    assert proc.returncode == 2
    assert f"TLS key {key} does not match the certificate" in _one_error_line(proc.stderr)
