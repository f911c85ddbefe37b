"""A small HTTP client of the management API (``/api/v1``) for the CLI: answers as dicts, failures as the
ConveyorError the status stands for, so the exit code says the same thing as the server.
"""

from __future__ import annotations

import ssl
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from conveyor.control import API_HEADER
from conveyor.errors import (
    Conflict,
    ConveyorError,
    DeadlineExceeded,
    DiskFull,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)

# An HTTP status back to the error it stands for (the inverse of frontend.http_errors.STATUS_BY_CODE).
STATUS_ERRORS: dict[int, type[ConveyorError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: Overloaded,
    503: Unavailable,
    504: DeadlineExceeded,
    507: DiskFull,
}


def error_message(resp: httpx.Response) -> str:
    """The ``{"error": ...}`` of a failed answer; for any other body one line that says what came back."""
    try:
        return str(orjson.loads(resp.content).get("error", resp.text))
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if resp.headers.get("content-type", "").startswith("text/html"):
        return f"{resp.reason_phrase} (an HTML page, not a Conveyor or V2 error)"
    first = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
    return first or resp.reason_phrase


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else InvalidInput saying what is wrong with it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidInput(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(f"invalid URL {url!r}: use http://HOST:PORT or https://HOST:PORT")
    return url


def error_for(status: int, message: str) -> ConveyorError:
    error = STATUS_ERRORS.get(status, InvalidInput if status < 500 else ConveyorError)
    return error(message)


def verify_for(url: str, ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for ``url``: an https server's certificate is checked against ``ca_file``, else
    the system's trust store; plain http needs no context (building one reads the trust store)."""
    if not url.lower().startswith("https:"):
        return True
    from conveyor.security.tls import client_context

    return client_context(ca_file)


class ApiClient:
    """``get``/``post``/``delete`` on ``URL/api/v1/PATH``; one connection pool per command. An https URL's
    certificate is verified against ``ca_file`` (a PEM bundle), else the system's trust store."""

    def __init__(
        self, url: str, *, timeout: float = 30.0, ca_file: Path | None = None, token: str | None = None
    ) -> None:
        """``token``: the bearer token to send; None: CONVEYOR_TOKEN, else the local admin token for a
        loopback URL (security/credentials.py); "": none."""
        from conveyor.security.credentials import client_token
        from conveyor.settings import get_settings

        self.url = check_url(url).rstrip("/")
        verify = verify_for(self.url, ca_file)
        token = client_token(get_settings(), self.url) if token is None else token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._sends_token = bool(token)
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1", timeout=timeout, verify=verify, headers=headers
        )

    def get(self, path: str) -> dict[str, Any]:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("POST", path, body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(self._failure(exc)) from None
        if API_HEADER not in resp.headers:  # some other server: its answers mean nothing here
            kind = resp.headers.get("content-type", "no content type").split(";")[0]
            raise Unavailable(
                f"{self.url} is not a Conveyor control plane (HTTP {resp.status_code}, {kind}); "
                "check --url or CONVEYOR_URL"
            )
        if resp.status_code == 401 and not self._sends_token:
            raise error_for(
                401,
                f"{self.url} needs a token: set CONVEYOR_TOKEN (conveyor tokens create NAME --role ...); on "
                "the control plane's machine the CLI uses the admin token `conveyor up` wrote under the home",
            )
        if resp.status_code >= 400:
            raise error_for(resp.status_code, error_message(resp))
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise Unavailable(
                f"{self.url} is not a Conveyor control plane (answered {resp.text[:80]!r})"
            ) from None
        if not isinstance(data, dict):
            raise Unavailable(f"{self.url} is not a Conveyor control plane (answered {type(data).__name__})")
        return data

    def _failure(self, exc: httpx.HTTPError) -> str:
        from conveyor.security.tls import tls_problem

        if (tls := tls_problem(self.url, exc)) is not None:  # an unknown certificate, a server not on TLS
            return tls
        if isinstance(exc, httpx.ConnectError):
            return (
                f"control plane not reachable at {self.url}: "
                "start it with `conveyor up` (or set CONVEYOR_URL)"
            )
        return f"control plane at {self.url} failed to answer: {exc or type(exc).__name__}"


def api_client(url: str | None) -> ApiClient:
    """A client of ``url``, else of the management API in the settings (CONVEYOR_URL), verifying https with
    the command's --ca, else CONVEYOR_TLS_CA_FILE, else the system's trust store."""
    from conveyor.settings import get_settings

    settings = get_settings()
    return ApiClient(url or settings.url, ca_file=ca_file(settings.tls_ca_file))


def request(
    url: str | None, method: str, path: str, body: dict[str, Any] | None = None, *, as_json: bool = False
) -> dict[str, Any] | None:
    """One API call; with ``as_json`` the answer is printed for scripts and None returned (nothing left)."""
    with api_client(url) as api:
        answer = api.call(method, path, body)
    if as_json:
        from conveyor.cli.output import print_json

        print_json(answer)
        return None
    return answer


def _deployment_name(name: str) -> str:
    from conveyor.spec.resources import name_problem

    if problem := name_problem(name):
        raise typer.BadParameter(problem)
    return name


NameArg = Annotated[str, typer.Argument(help="Deployment name.", callback=_deployment_name)]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Management API of the control plane (default: $CONVEYOR_URL, else http://127.0.0.1:8000).",
    ),
]
# --ca of the command being run (one command per process): its callback keeps it here, so the commands that
# take --url need no code for it, only the option.
_CA_OPTION: ContextVar[Path | None] = ContextVar("conveyor_ca_option", default=None)


def _remember_ca(value: Path | None) -> None:
    _CA_OPTION.set(value)


def ca_file(default: Path | None) -> Path | None:
    """The command's --ca when given, else ``default`` (the settings' tls_ca_file)."""
    return _CA_OPTION.get() or default


CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        metavar="FILE",
        help="PEM CA bundle to verify an https server's certificate with (default: $CONVEYOR_TLS_CA_FILE, "
        "else the system's trust store).",
        callback=_remember_ca,
        expose_value=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON for scripts instead of tables.")]
