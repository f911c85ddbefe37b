"""The control plane's alert loop: every ``metrics_scrape_interval_s``, evaluate every deployment's rules
over the stack history, store what changed, log each transition (logger ``conveyor.alerts``) and queue its
webhook notifications; ``conveyor_alerts_firing`` is served from the last evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.control.alert_ops import deployment_rules
from conveyor.observe import metrics as m
from conveyor.observe.alert_state import Alert, Key
from conveyor.observe.alerts import Rule, Transition, evaluate
from conveyor.observe.history import StackHistory
from conveyor.observe.notify import Notifier, webhook_payload
from conveyor.registry import Registry
from conveyor.settings import Settings
from conveyor.tasks import cancel_all

log = logging.getLogger("conveyor.alerts")
REFRESH_S = 15.0
"""Alert values are stored at each transition and at least this often while any alert is on."""


class AlertLoop:
    def __init__(
        self, registry: Registry, history: StackHistory, settings: Settings, notifier: Notifier | None = None
    ) -> None:
        self.registry = registry
        self.history = history
        self.interval_s = settings.metrics_scrape_interval_s
        self.webhooks = tuple(settings.alert_webhooks)
        self.generator_url = settings.url.rstrip("/") + "/api/v1/alerts"
        self.notifier = notifier or Notifier()
        self.states: dict[Key, Alert] = {}
        self._saved_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._collector = _FiringCollector(self)
        self.may_act: Callable[[], bool] = lambda: True
        """Asked before every evaluation: False while another control plane leads (control/leader.py)."""

    async def start(self) -> None:
        self.states = await asyncio.to_thread(self.registry.alerts.load)  # go on from before a restart
        await self.notifier.start()
        m.REGISTRY.register(self._collector)
        self._task = asyncio.create_task(self._run(), name="alerts")

    async def stop(self) -> None:
        await cancel_all([self._task])
        self._task = None
        with contextlib.suppress(KeyError):
            m.REGISTRY.unregister(self._collector)
        await self.notifier.drain(2.0)  # what is under way gets a moment to arrive
        await self.notifier.stop()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                if self.may_act():  # a follower neither stores alert states nor notifies
                    await self.step()
            except Exception:  # the loop outlives one bad evaluation (a locked database, a bad rule)
                log.exception("evaluating the alert rules failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def step(self, now: float | None = None) -> list[Transition]:
        """One evaluation; its transitions."""
        if len(self.history.times()) < 2:  # no rate yet (just started): keep what was stored
            return []
        rules = await asyncio.to_thread(deployment_rules, self.registry)
        now = time.time() if now is None else now
        before = self.states
        states, transitions = evaluate(rules, self.history, now, before)
        removed = [k for k in before if k not in states]
        changed = bool(transitions) or bool(removed) or set(states) != set(before)
        if changed or (states and now - self._saved_at >= REFRESH_S):
            await asyncio.to_thread(self.registry.alerts.save, states, removed)
            self._saved_at = now
        self.states = states
        by_rule = {(r.name, r.deployment): r for r in rules}
        for t in transitions:
            self._announce(t, by_rule.get((t.alert.rule, t.alert.deployment)))
        return transitions

    def _announce(self, t: Transition, rule: Rule | None) -> None:
        a = t.alert
        log.log(
            logging.WARNING if t.after == "firing" else logging.INFO,
            "alert %s %s: %s",
            a.rule,
            t.after,
            a.annotations.get("summary", a.deployment),
            extra={
                "alert": a.rule,
                "deployment": a.deployment,
                "version": a.version,
                "severity": a.severity,
                "state": t.after,
                "previous": t.before,
                "value": a.value,
            },
        )
        if t.after in ("firing", "resolved"):
            urls = (*(rule.webhooks if rule is not None else ()), *self.webhooks)
            if urls:
                self.notifier.send(
                    urls, webhook_payload(a, f"{self.generator_url}?deployment={a.deployment}")
                )


class _FiringCollector(Collector):
    """``conveyor_alerts_firing``: 1 per (alert, deployment, severity) firing at the last evaluation."""

    def __init__(self, loop: AlertLoop) -> None:
        self._loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            m.ALERTS_FIRING, m.METRICS[m.ALERTS_FIRING].help, labels=["alert", "deployment", "severity"]
        )
        firing = {
            (a.rule, a.deployment, a.severity)
            for a in list(self._loop.states.values())
            if a.state == "firing"
        }
        for labels in sorted(firing):
            family.add_metric(list(labels), 1.0)
        yield family
