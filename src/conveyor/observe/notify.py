"""Alert notifications to webhooks, in Alertmanager's webhook format (version 4), off the evaluation path:
``send`` only queues (a bounded queue; what does not fit is dropped, counted, and logged once), and worker
tasks POST with retries and backoff until a deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from conveyor.observe.alert_state import Alert
from conveyor.tasks import cancel_all

log = logging.getLogger("conveyor.alerts")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


def webhook_payload(alert: Alert, generator_url: str) -> dict[str, Any]:
    """The Alertmanager webhook body for one alert's transition (status firing or resolved)."""
    status = "resolved" if alert.state == "resolved" else "firing"
    labels = dict(alert.labels)
    item = {
        "status": status,
        "labels": labels,
        "annotations": dict(alert.annotations),
        "startsAt": _rfc3339(alert.fired_at if alert.fired_at is not None else alert.active_since),
        "endsAt": _rfc3339(alert.resolved_at) if status == "resolved" and alert.resolved_at else ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16],
    }
    group = {"alertname": labels.get("alertname", alert.rule), "deployment": alert.deployment}
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "conveyor",
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": dict(alert.annotations),
        "externalURL": generator_url.split("/api/", 1)[0],
        "alerts": [item],
    }


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Notifier:
    """Delivers queued webhook POSTs with ``workers`` tasks; each is retried (0.5 s doubling to 10 s, with
    jitter) on a connection error, a 5xx or a 429 until ``deadline_s`` after it was queued."""

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        workers: int = 4,
        deadline_s: float = 120.0,
        timeout_s: float = 5.0,
        first_backoff_s: float = 0.5,
    ) -> None:
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], float]] = asyncio.Queue(queue_size)
        self._workers = workers
        self._deadline_s = deadline_s
        self._timeout_s = timeout_s
        self._first_backoff_s = first_backoff_s
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self.dropped = 0
        self.delivered = 0
        self.failed = 0

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout_s, trust_env=False)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"alert-webhook-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def send(self, urls: Iterable[str], payload: dict[str, Any]) -> None:
        """Queue one POST of ``payload`` per URL; never blocks."""
        deadline = asyncio.get_running_loop().time() + self._deadline_s
        for url in dict.fromkeys(urls):
            try:
                self._queue.put_nowait((url, payload, deadline))
            except asyncio.QueueFull:
                self.dropped += 1
                if self.dropped == 1:  # once: a dead receiver must not flood the log as well
                    log.warning(
                        "alert notification queue full: notifications dropped (counted, not logged again)",
                        extra={"url": url},
                    )

    async def _work(self) -> None:
        while True:
            url, payload, deadline = await self._queue.get()
            try:
                await self._deliver(url, payload, deadline)
            finally:
                self._queue.task_done()

    async def _deliver(self, url: str, payload: dict[str, Any], deadline: float) -> None:
        assert self._client is not None
        loop = asyncio.get_running_loop()
        backoff = self._first_backoff_s
        attempt = 0
        while True:
            attempt += 1
            why: str
            try:
                response = await self._client.post(url, json=payload)
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    self.delivered += 1
                    return
                why = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses it: asking again gets the same answer
            pause = min(backoff, 10.0) * (0.5 + random.random() / 2)
            if loop.time() + pause > deadline:
                break
            await asyncio.sleep(pause)
            backoff *= 2
        self.failed += 1
        log.warning(
            "alert notification not delivered after %d attempt(s): %s",
            attempt,
            why,
            extra={"url": url, "alert": payload["groupLabels"].get("alertname"), "status": payload["status"]},
        )

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued was delivered or given up; False after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            return False
        return True
