"""The dev CA and the checks of TLS files: what `conveyor certs dev` writes, and the one-line error a server
or a client gives for each bad file."""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from conveyor.errors import Conflict, InvalidInput
from conveyor.security.dev_ca import DevCertificates, make_dev_certificates
from conveyor.security.tls import ServerTls, client_context, server_tls, tls_problem


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    return make_dev_certificates(tmp_path_factory.mktemp("tls"), ["gw.example.test", "10.1.2.3"])


def test_the_dev_certificate_names_localhost_the_loopbacks_and_extra_hosts(dev: DevCertificates) -> None:
    cert = x509.load_pem_x509_certificate(dev.cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "gw.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    ]
    ca = x509.load_pem_x509_certificate(dev.ca_file.read_bytes())
    cert.verify_directly_issued_by(ca)


def test_the_key_is_readable_by_its_owner_only(dev: DevCertificates) -> None:
    assert stat.S_IMODE(dev.key_file.stat().st_mode) == 0o600


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> None:
    """A TLS handshake in memory for localhost: each side reads what the other wrote."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert c.version() is not None and s.version() is not None


def test_a_client_trusting_the_dev_ca_completes_a_handshake_with_the_server_context(
    dev: DevCertificates,
) -> None:
    _handshake(client_context(dev.ca_file), ServerTls.load(dev.cert_file, dev.key_file).ssl_context())


def test_the_system_trust_store_does_not_trust_the_dev_ca(dev: DevCertificates) -> None:
    server = ServerTls.load(dev.cert_file, dev.key_file).ssl_context()
    with pytest.raises(ssl.SSLCertVerificationError) as failure:
        _handshake(client_context(), server)
    line = tls_problem("https://localhost:8443", failure.value)
    assert line is not None
    assert line.startswith("certificate of https://localhost:8443 not trusted: ")
    assert line.endswith("(use --ca or CONVEYOR_TLS_CA_FILE)")


def test_certs_dev_refuses_to_overwrite_without_force(dev: DevCertificates) -> None:
    with pytest.raises(Conflict, match="already exists; pass --force"):
        make_dev_certificates(dev.ca_file.parent)


def test_force_replaces_the_ca_and_the_certificate(tmp_path: Path) -> None:
    first = make_dev_certificates(tmp_path)
    old = first.ca_file.read_bytes()
    second = make_dev_certificates(tmp_path, force=True)
    assert second.ca_file.read_bytes() != old
    ServerTls.load(second.cert_file, second.key_file)


def test_a_host_that_is_no_name_nor_address_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="'bad host' is neither a DNS name nor an IP address"):
        make_dev_certificates(tmp_path / "tls", ["bad host"])
    assert not (tmp_path / "tls").exists()


def test_neither_file_set_means_no_tls() -> None:
    assert server_tls(None, None) is None


def _one_line(exc: pytest.ExceptionInfo[InvalidInput]) -> str:
    assert "\n" not in exc.value.message
    return exc.value.message


def test_a_certificate_without_its_key_is_refused(dev: DevCertificates) -> None:
    with pytest.raises(InvalidInput) as exc:
        server_tls(dev.cert_file, None)
    assert "set --tls-key or CONVEYOR_TLS_KEY_FILE too" in _one_line(exc)
    with pytest.raises(InvalidInput) as exc:
        server_tls(None, dev.key_file)
    assert "set --tls-cert or CONVEYOR_TLS_CERT_FILE too" in _one_line(exc)


def test_a_missing_certificate_file_is_named(dev: DevCertificates, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        server_tls(tmp_path / "nope.pem", dev.key_file)
    assert _one_line(exc) == f"TLS certificate {tmp_path / 'nope.pem'} not found"


def test_an_unreadable_key_is_named(dev: DevCertificates, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        server_tls(dev.cert_file, tmp_path)
    assert _one_line(exc) == f"TLS key {tmp_path} is a directory, not a PEM file"


def test_a_file_that_is_not_pem_is_named(dev: DevCertificates, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x00\x01 not a certificate")
    with pytest.raises(InvalidInput) as exc:
        server_tls(junk, dev.key_file)
    assert _one_line(exc) == f"TLS certificate {junk} is not a PEM certificate"
    with pytest.raises(InvalidInput) as exc:
        server_tls(dev.cert_file, junk)
    assert _one_line(exc) == f"TLS key {junk} is not a PEM private key"


def test_a_key_of_another_certificate_is_refused(dev: DevCertificates, tmp_path: Path) -> None:
    other = make_dev_certificates(tmp_path)
    with pytest.raises(InvalidInput) as exc:
        server_tls(dev.cert_file, other.key_file)
    assert _one_line(exc) == f"TLS key {other.key_file} does not match the certificate {dev.cert_file}"


def test_a_ca_file_without_certificates_is_refused(dev: DevCertificates, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        client_context(dev.key_file)
    assert _one_line(exc) == f"CA file {dev.key_file} holds no PEM certificate"
    with pytest.raises(InvalidInput) as exc:
        client_context(tmp_path / "missing.pem")
    assert _one_line(exc) == f"CA file {tmp_path / 'missing.pem'} not found"


def test_other_failures_are_no_tls_problem() -> None:
    assert tls_problem("https://x", ConnectionRefusedError(111, "refused")) is None
