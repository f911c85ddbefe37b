"""The control plane's view of the whole stack's metrics: its own, its gateways' and its replicas', each
sample labelled with ``component`` (control, gateway, replica) and ``instance`` (control, gateway or the
gateway's id when there are several, the replica's id).

Gateways are scraped over HTTP (``GET /metrics`` with the stack's token), replicas over their channel (one
METRICS frame on a short-lived connection to the unix socket the gateways use). Each is bounded by
``timeout_s``; one that does not answer is left out of that scrape and counted in
``conveyor_scrape_errors_total{instance}``. ``StackScraper.run`` feeds the stack's history every interval.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from conveyor.observe.collectors import render
from conveyor.observe.control_metrics import ControlMetrics
from conveyor.observe.history import Sample, StackHistory
from conveyor.protocol import frames
from conveyor.targets.probe import exchange

log = logging.getLogger("conveyor.observe")
SCRAPED_STATES = ("ready", "draining")
"""Replicas scraped: a starting one may not listen yet, a stopping one is going away."""


@dataclass(frozen=True, slots=True)
class Scraped:
    component: str
    instance: str
    text: str


class StackScraper:
    """Scrapes the stack: ``gateways()`` and ``replicas()`` give the control plane's current lists (dicts
    with ``url`` / ``id``, and ``id`` / ``address`` / ``state``)."""

    def __init__(
        self,
        gateways: Callable[[], list[dict[str, Any]]],
        replicas: Callable[[], list[dict[str, Any]]],
        metrics: ControlMetrics,
        *,
        token: Callable[[], str | None] = lambda: None,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 1.0,
    ) -> None:
        self._gateways = gateways
        self._replicas = replicas
        self.metrics = metrics
        self._token = token
        self._verify = verify
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    async def scrape(self) -> list[Scraped]:
        """Every process of the stack that answered within the timeout, the control plane first."""
        gateways = self._gateways()
        targets: list[tuple[str, str, Any]] = []
        for g in gateways:
            instance = "gateway" if len(gateways) == 1 else str(g.get("id") or g["url"])
            targets.append(("gateway", instance, self._gateway(str(g["url"]))))
        for r in self._replicas():
            if r.get("state") in SCRAPED_STATES and r.get("address"):
                targets.append(("replica", str(r["id"]), _replica(str(r["address"]), self.timeout_s)))
        results = await asyncio.gather(*(t[2] for t in targets), return_exceptions=True)
        found = []
        for (component, instance, _), result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                self.metrics.scrape_errors[instance] += 1
                log.debug("scrape of %s %s failed: %r", component, instance, result)
            else:
                found.append(Scraped(component, instance, result))
        # Rendered last, so its conveyor_scrape_errors_total counts this scrape's failures; listed first.
        found.insert(0, Scraped("control", "control", render().decode()))
        return found

    async def _gateway(self, url: str) -> str:
        if self._http is None:
            self._http = httpx.AsyncClient(verify=self._verify, timeout=self.timeout_s)
        token = self._token()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        resp = await self._http.get(url.rstrip("/") + "/metrics", headers=headers)
        resp.raise_for_status()
        return resp.text

    async def samples(self) -> list[Sample]:
        """One scrape as history samples."""
        out: list[Sample] = []
        for family in _families(await self.scrape()):
            out.extend((s.name, s.labels, float(s.value)) for s in family.samples)
        return out

    async def exposition(self) -> bytes:
        """One scrape as one Prometheus text exposition (what the control plane's ``GET /metrics`` serves)."""
        return generate_latest(_Families(_families(await self.scrape())))

    async def run(self, history: StackHistory, interval_s: float) -> None:
        """Add a scrape to ``history`` every ``interval_s`` until cancelled."""
        while True:
            started = time.monotonic()
            try:
                history.add(time.time(), await self.samples())
            except Exception:  # the loop outlives any one bad scrape
                log.exception("scraping the stack's metrics failed")
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


async def _replica(address: str, timeout_s: float) -> str:
    async with asyncio.timeout(timeout_s):
        stream, kind, payload = await exchange(address, frames.METRICS)
    if stream != 1 or kind != frames.OK:
        raise ValueError(f"replica at {address} answered kind {kind:#x} to METRICS")
    return payload.decode()


def _families(scraped: Iterable[Scraped]) -> list[Metric]:
    """The families of every process, merged by name, each sample with its process's two labels."""
    merged: dict[str, Metric] = {}
    for s in scraped:
        extra = {"component": s.component, "instance": s.instance}
        for family in text_string_to_metric_families(s.text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type)
            into.samples.extend(
                PromSample(x.name, {**x.labels, **extra}, x.value, x.timestamp, x.exemplar)
                for x in family.samples
            )
    return list(merged.values())


class _Families:
    """What ``generate_latest`` takes: something with ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
