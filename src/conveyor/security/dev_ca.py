"""A local certificate authority for trying TLS (``conveyor certs dev``): a self-signed CA and one server
certificate it signs, for localhost, 127.0.0.1, ::1 and any extra host, written as PEM files.

ECDSA P-256 keys with SHA-256 signatures: what Python's ssl (OpenSSL), gRPC (BoringSSL), curl, browsers and
every tritonclient accept; Ed25519 certificates are still refused by several of them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conveyor.errors import Conflict, InvalidInput, disk_full_as_error

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity Apple's TLS clients accept for a server certificate


@dataclass(frozen=True, slots=True)
class DevCertificates:
    """Where ``make_dev_certificates`` wrote the CA, the server certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    hosts: tuple[str, ...]


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    name = host.strip().rstrip(".").lower()
    labels = name.split(".")
    ok = all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() for label in labels
    )
    if not ok:
        raise InvalidInput(f"--host {host!r} is neither a DNS name nor an IP address")
    return x509.DNSName(name)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Conveyor dev CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Conveyor development CA (not for production)")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server(
    hosts: Sequence[str], ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with disk_full_as_error(str(path)):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, mode)  # O_CREAT's mode is cut by the umask, and an old file keeps its own
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def make_dev_certificates(
    directory: Path, extra_hosts: Sequence[str] = (), *, force: bool = False
) -> DevCertificates:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` (mode 0600) under ``directory``.

    Conflict when one of them exists and ``force`` is not set: a CA others already trust is never replaced
    silently. InvalidInput for a host that is neither a DNS name nor an IP address.
    """
    hosts = tuple(dict.fromkeys([*DEFAULT_HOSTS, *(h.strip() for h in extra_hosts)]))
    for host in hosts:
        _san(host)  # a bad host fails before anything is written
    out = DevCertificates(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE, hosts)
    existing = [p for p in (out.ca_file, out.cert_file, out.key_file) if p.exists()]
    if existing and not force:
        raise Conflict(f"{existing[0]} already exists; pass --force to replace the dev CA and certificate")
    with disk_full_as_error(str(directory)):
        directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca = _ca(now)
    key, cert = _server(hosts, ca_key, ca, now)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(out.ca_file, ca.public_bytes(pem), 0o644)
    _write(out.cert_file, cert.public_bytes(pem), 0o644)
    _write(out.key_file, key_pem, 0o600)
    return out
