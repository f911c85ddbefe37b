"""TLS for Conveyor's servers and clients: the certificate and key a server serves, checked at start with a
one-line error naming the file; SSL contexts for servers and clients; gRPC server credentials; and the one
line a client prints when a server's certificate is not trusted.

Only the standard library at import (the CLI imports this module); ``cryptography`` and ``grpc`` load inside
the functions that need them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import InvalidInput

if TYPE_CHECKING:
    import grpc

    from conveyor.settings import Settings

CERT_HINT = "--tls-cert or CONVEYOR_TLS_CERT_FILE"
KEY_HINT = "--tls-key or CONVEYOR_TLS_KEY_FILE"
CA_HINT = "use --ca or CONVEYOR_TLS_CA_FILE"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise InvalidInput(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def _public_key_bytes(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    public = key.public_key()  # type: ignore[attr-defined]
    return bytes(
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A certificate (chain, leaf first) and the private key that matches it, read and checked once."""

    cert_file: Path
    key_file: Path
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> ServerTls:
        """Read and check both files; InvalidInput naming the file for anything that would fail the server
        later: missing, unreadable, not PEM, an encrypted key, or a key that is not the certificate's."""
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        cert_pem = _read(cert_file, "TLS certificate")
        key_pem = _read(key_file, "TLS key")
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError:
            raise InvalidInput(f"TLS certificate {cert_file} is not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError:
            raise InvalidInput(
                f"TLS key {key_file} is encrypted; give the server an unencrypted key"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidInput(f"TLS key {key_file} is not a PEM private key") from None
        if _public_key_bytes(chain[0]) != _public_key_bytes(key):
            raise InvalidInput(f"TLS key {key_file} does not match the certificate {cert_file}")
        return cls(cert_file, key_file, cert_pem, key_pem)

    def ssl_context(self) -> ssl.SSLContext:
        """A server context: TLS 1.2 or later, the certificate and key loaded."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:  # changed on disk since load(), or a key OpenSSL refuses
            raise InvalidInput(f"TLS certificate {self.cert_file} cannot be served: {exc}") from None
        return context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        import grpc

        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])


def server_tls(cert_file: Path | None, key_file: Path | None) -> ServerTls | None:
    """The checked pair, or None when neither is set; setting only one of the two is an error."""
    if cert_file is None and key_file is None:
        return None
    if cert_file is None:
        raise InvalidInput(f"a TLS key ({key_file}) is set without a certificate: set {CERT_HINT} too")
    if key_file is None:
        raise InvalidInput(f"a TLS certificate ({cert_file}) is set without its key: set {KEY_HINT} too")
    return ServerTls.load(cert_file, key_file)


def settings_server_tls(settings: Settings) -> ServerTls | None:
    """The pair of ``tls_cert_file`` / ``tls_key_file``, checked; None when TLS is off."""
    return server_tls(settings.tls_cert_file, settings.tls_key_file)


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name: against ``ca_file`` (a PEM
    bundle; a certificate in it is trusted even when it is not a root, as Python 3.13 does by default), else
    against the system's trust store."""
    if ca_file is None:
        return ssl.create_default_context()
    pem = _read(ca_file, "CA file")
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidInput(f"CA file {ca_file} holds no PEM certificate")
    try:
        context = ssl.create_default_context(cadata=pem.decode("ascii", errors="replace"))
    except ssl.SSLError as exc:
        raise InvalidInput(f"CA file {ca_file} is not a usable PEM bundle: {exc}") from None
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a client library's connection error (httpx wraps it), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
        if current is None and exc.args and isinstance(exc.args[0], BaseException):
            current = exc.args[0]
    return None


def tls_problem(url: str, exc: BaseException) -> str | None:
    """One line for a TLS failure talking to ``url``: a certificate not trusted, or a failed handshake (a
    server that does not speak TLS); None when ``exc`` is not a TLS failure."""
    failure = tls_failure(exc)
    if failure is None:
        return None
    if isinstance(failure, ssl.SSLCertVerificationError):
        reason = failure.verify_message or failure.reason or str(failure)
        return f"certificate of {url} not trusted: {reason} ({CA_HINT})"
    reason = failure.reason or str(failure)
    return f"TLS handshake with {url} failed: {reason} (is it serving https?)"
