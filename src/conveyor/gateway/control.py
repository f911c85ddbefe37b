"""The gateway's side of the control plane (docs/control-plane.md): follow its routing table, report load.

Both tasks outlive the control plane: a lost watch stream keeps the last table and reconnects with backoff
(the stream starts with the current table, so reconnecting re-fetches it); a failed report is dropped, the
next one follows 0.5 s later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from conveyor.errors import InvalidInput
from conveyor.gateway.gateway import Gateway
from conveyor.security.tls import tls_problem
from conveyor.tasks import cancel_all

log = logging.getLogger("conveyor.gateway")
WATCH_PATH = "/api/v1/routing/watch"
REPORT_PATH = "/api/v1/gateways/report"
REPORT_TIMEOUT_S = 2.0  # a report later than this is stale anyway: the next one is due


def load_report(gateway: Gateway, gateway_id: str, url: str, grpc_url: str | None) -> dict[str, Any] | None:
    """The load report of docs/control-plane.md; None before the first table (nothing to acknowledge)."""
    if gateway.epoch is None:
        return None
    routes = []
    for route in gateway.table.routes:
        replicas = []
        for r in route.replicas:
            row: dict[str, Any] = {
                "address": r.upstream.address,
                "admitted": r.admitted,
                "inFlight": r.inflight,
            }
            # An in-process replica whose load failed says why: the control plane records it as an event.
            if (problem := getattr(r.upstream, "problem", None)) is not None:
                row["problem"] = str(problem)
            replicas.append(row)
        routes.append(
            {
                "name": route.name,
                "version": route.version,
                "inFlight": sum(r.inflight for r in route.replicas),
                "held": gateway.held.held((route.name, route.version)),
                "replicas": replicas,
            }
        )
    return {
        "gateway": gateway_id,
        "url": url,
        "grpcUrl": grpc_url,
        "epoch": gateway.epoch,
        "generation": gateway.generation,
        "routes": routes,
    }


class ControlPlaneClient:
    """Two tasks over one HTTP client: the table watch and the load reporter. ``url`` (and ``grpc_url``) are
    the gateway's own addresses, set once its ports listen; reports start when both a table and ``url`` are
    known."""

    def __init__(
        self,
        gateway: Gateway,
        control_url: str,
        *,
        gateway_id: str | None = None,
        report_interval_s: float = 0.5,
        read_timeout_s: float = 15.0,
        backoff_s: tuple[float, float] = (0.2, 2.0),
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        token: str | None = None,
    ) -> None:
        """``read_timeout_s`` notices a control plane that stopped answering (it sends a keep-alive every
        5 s); ``backoff_s`` is the first and the longest wait between reconnections; ``verify`` is the SSL
        context an https control plane's certificate is checked with (True: httpx's default bundle)."""
        self.gateway = gateway
        self.control_url = control_url.rstrip("/")
        self.gateway_id = gateway_id or f"gw-{secrets.token_hex(4)}"
        self.url: str | None = None
        self.grpc_url: str | None = None
        self.report_interval_s = report_interval_s
        self.connected = False
        self._read_timeout_s = read_timeout_s
        self._backoff_s = backoff_s
        self._transport = transport
        self._verify = verify
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._table_applied = asyncio.Event()
        self._report_now = asyncio.Event()

    async def start(self) -> None:
        timeout = httpx.Timeout(5.0, read=self._read_timeout_s)
        self._http = httpx.AsyncClient(
            base_url=self.control_url,
            timeout=timeout,
            transport=self._transport,
            verify=self._verify,
            headers=self._headers,
        )
        self.gateway.held.on_held = self.report_now
        self.gateway.on_admitted = self.report_now  # an in-process replica loaded: the control plane waits
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow()), loop.create_task(self._report())]

    def report_now(self) -> None:
        """Post a report without waiting for the next tick (a table applied, a request held, a port open)."""
        self._report_now.set()

    async def wait_for_table(self, timeout_s: float) -> bool:
        """True once a table has been applied; False if none came within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._table_applied.wait()
        return self._table_applied.is_set()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        self.gateway.held.on_held = None
        self.gateway.on_admitted = None
        if self._http is not None:
            await self._http.aclose()

    # -- the routing table --
    async def _follow(self) -> None:
        first, longest = self._backoff_s
        delay = first
        while True:
            try:
                async for line in self._watch():
                    self._apply(line)
                    delay = first
                problem, tls, refused = "the control plane ended the stream", None, None
            except Exception as exc:  # any failure (refused, reset, timeout): keep the table, retry
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                tls, refused = tls_problem(self.control_url, exc), _refused_token(exc)
            if self.connected:
                log.warning(
                    "lost the control plane at %s (%s); serving the last table", self.control_url, problem
                )
            elif tls is not None:  # an untrusted certificate: say why at once, retrying will not fix it
                log.error("cannot follow the control plane: %s", tls)
            elif refused is not None:  # nor will retrying with the same token
                log.error(
                    "the control plane at %s refused this gateway's token (%s); set CONVEYOR_TOKEN to a "
                    "token with the gateway role: conveyor tokens create NAME --role gateway",
                    self.control_url,
                    refused,
                )
            else:
                log.debug("control plane at %s unreachable: %s", self.control_url, problem)
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _watch(self) -> AsyncIterator[str]:
        assert self._http is not None
        async with self._http.stream("GET", WATCH_PATH) as response:
            if response.status_code != 200:
                await response.aread()
                raise httpx.HTTPStatusError(
                    f"{WATCH_PATH} answered {response.status_code}: {response.text[:200]}",
                    request=response.request,
                    response=response,
                )
            if not self.connected:
                log.info("following the routing table of %s", self.control_url)
            self.connected = True
            async for line in response.aiter_lines():
                if line.strip():  # blank lines are keep-alives
                    yield line

    def _apply(self, line: str) -> None:
        try:
            self.gateway.apply_table(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.error("refused a routing table from %s: not JSON: %.200s", self.control_url, line)
            return
        except InvalidInput as exc:  # keep serving with the table we have
            log.error("refused a routing table from %s: %s", self.control_url, exc)
            return
        if self.gateway.epoch is not None:
            self._table_applied.set()
            self.report_now()  # acknowledge it now: the control plane waits for that to drain replicas

    # -- load reports --
    async def _report(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation that stops us.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.report_interval_s):
                    await self._report_now.wait()
            self._report_now.clear()
            try:
                await self._post_report()
            except Exception as exc:  # the reporter must outlive any failure: the next report is due soon
                log.debug("load report to %s failed: %s", self.control_url, exc)
            await asyncio.sleep(0.05)  # a burst of held requests is one report, not hundreds

    async def _post_report(self) -> None:
        if self.url is None or self._http is None:
            return
        report = load_report(self.gateway, self.gateway_id, self.url, self.grpc_url)
        if report is not None:
            body = orjson.dumps(report)
            headers = {"content-type": "application/json"}
            await self._http.post(REPORT_PATH, content=body, headers=headers, timeout=REPORT_TIMEOUT_S)


def _refused_token(exc: BaseException) -> str | None:
    """The control plane's reason when it answered 401 / 403 (no token, or one that may not follow)."""
    if not isinstance(exc, httpx.HTTPStatusError) or exc.response.status_code not in (401, 403):
        return None
    try:
        return str(orjson.loads(exc.response.content).get("error")) or str(exc.response.status_code)
    except (orjson.JSONDecodeError, AttributeError):
        return str(exc.response.status_code)
