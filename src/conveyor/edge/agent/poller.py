"""The agent's side of the control plane's edge routes (docs/edge.md): register, ask what to serve with a
conditional request (If-None-Match: a 304 costs no body and no database work on the node), send heartbeats.

Failures become the error they stand for: the link or the control plane away (no answer, 5xx, a follower's
503) is ``Unavailable`` and the agent backs off; a 4xx names what the control plane refused.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from conveyor import errors

_STATUS_ERRORS: dict[int, type[errors.ConveyorError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
}


@dataclass(frozen=True, slots=True)
class Desired:
    """What the control plane says the node should serve (edge_ops.desired_for's document)."""

    model: str
    version: str
    sha256: str
    size: int
    artifact: str  # the download path on the control plane
    require_signed: bool
    signatures: tuple[tuple[str, str], ...]  # (key id, base64 signature)
    revision: int
    etag: str

    @classmethod
    def from_doc(cls, doc: Any, etag: str) -> Desired:
        try:
            return cls(
                model=str(doc["model"]),
                version=str(doc["version"]),
                sha256=str(doc["sha256"]),
                size=int(doc["size"]),
                artifact=str(doc["artifact"]),
                require_signed=bool(doc["requireSignedModels"]),
                signatures=tuple((str(s["keyId"]), str(s["signature"])) for s in doc["signatures"]),
                revision=int(doc["revision"]),
                etag=etag,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.Unavailable(f"the control plane's answer is not an edge document: {exc!r}") from None

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}"


def error_of(response: httpx.Response, what: str) -> errors.ConveyorError:
    """The error a failed answer stands for, with the control plane's own message."""
    try:
        message = str(orjson.loads(response.content).get("error", response.text))
    except (orjson.JSONDecodeError, AttributeError):
        message = response.text.strip()[:200] or response.reason_phrase
    kind = _STATUS_ERRORS.get(response.status_code, errors.Unavailable)
    if response.status_code >= 500 or response.status_code == 429:
        kind = errors.Unavailable
    return kind(f"{what}: the control plane answered {response.status_code}: {message}")


class ControlPlaneLink:
    """One HTTP client (kept-alive connections) to the control plane at ``url``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # A read timeout bounds each wait for bytes, so a download that stalls fails and resumes later.
        self.client = httpx.AsyncClient(
            base_url=self.url, headers=headers, verify=verify, timeout=httpx.Timeout(timeout_s)
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def register(
        self, name: str, deployment: str, labels: dict[str, str], address: str | None, agent: str | None
    ) -> None:
        body: dict[str, Any] = {"deployment": deployment, "labels": labels}
        body.update({k: v for k, v in (("address", address), ("agentVersion", agent)) if v})
        await self._call("PUT", f"/api/v1/edges/{name}", f"registering edge node {name}", json=body)

    async def desired(self, name: str, etag: str | None) -> Desired | None:
        """The document, or None when it is unchanged since ``etag`` (304)."""
        headers = {"if-none-match": etag} if etag else {}
        response = await self._call(
            "GET", f"/api/v1/edges/{name}/desired", "asking what to serve", headers=headers
        )
        if response.status_code == 304:
            return None
        return Desired.from_doc(response.json(), response.headers.get("etag", ""))

    async def heartbeat(self, name: str, beat: dict[str, Any]) -> None:
        await self._call("POST", f"/api/v1/edges/{name}/heartbeat", "sending a heartbeat", json=beat)

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.Unavailable(
                f"{what}: cannot reach {self.url}: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            raise error_of(response, what)
        return response
