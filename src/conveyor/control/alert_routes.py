"""Alert routes of the management API: alerts (firing, pending, recently resolved), every deployment's
rules, AlertRule deletion, and the Prometheus rules / Grafana dashboard exports (docs/observability.md)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from conveyor.control.alert_ops import deployment_rules
from conveyor.observe.alert_state import Alert
from conveyor.observe.export_grafana import grafana_dashboard
from conveyor.observe.export_prometheus import prometheus_rules
from conveyor.registry import Registry
from conveyor.security.tokens import Principal

RECENT_S = 3600.0
"""Without ``all``, resolved alerts are listed for this long after they resolved."""
_ORDER = {"firing": 0, "pending": 1, "resolved": 2}


def alert_routes(registry: Registry, read: Any, deploy: Any) -> APIRouter:
    api = APIRouter(tags=["alerts"])

    @api.get("/alerts")
    async def alerts(
        who: Principal = read,
        all: Annotated[bool, Query(description="Every stored alert, not only recent ones.")] = False,
        deployment: str | None = None,
    ) -> dict[str, Any]:
        """Firing and pending alerts, and those resolved in the last hour (every stored one with ``all``),
        firing first."""
        found = await run_in_threadpool(registry.alerts.load)
        now = time.time()
        shown = [
            a
            for a in found.values()
            if (deployment is None or a.deployment == deployment) and (all or _recent(a, now))
        ]
        shown.sort(key=lambda a: (_ORDER[a.state], -a.since))
        return {"alerts": [a.to_dict() for a in shown]}

    @api.get("/alerts/rules")
    async def rules(who: Principal = read, deployment: str | None = None) -> dict[str, Any]:
        """The rules evaluated for every deployment (or one): built-in, its spec's, and AlertRules."""
        found = await run_in_threadpool(deployment_rules, registry, deployment)
        stored = await run_in_threadpool(registry.alerts.rules)
        return {"rules": [r.to_dict() for r in found], "alertRules": stored}

    @api.delete("/alertrules/{name}")
    async def delete_rule(name: str, who: Principal = deploy) -> dict[str, Any]:
        """Delete an AlertRule; its alerts resolve at the next evaluation."""
        await run_in_threadpool(lambda: registry.alerts.delete_rule(name, by=who.actor))
        return {"name": name, "deleted": True}

    @api.get("/export/prometheus/{name}")
    async def export_prometheus(name: str, who: Principal = read) -> dict[str, Any]:
        """The deployment's rules as a Prometheus alerting-rules file (JSON here; the CLI writes YAML)."""
        found = await run_in_threadpool(deployment_rules, registry, name)
        return prometheus_rules(name, found)

    @api.get("/export/grafana")
    async def export_grafana(who: Principal = read, deployment: str | None = None) -> dict[str, Any]:
        """A Grafana dashboard (its data source an input, ${DS_PROMETHEUS}), for one deployment or all."""
        if deployment is not None:
            await run_in_threadpool(registry.deployments.get, deployment)  # NotFound for a typo
        return grafana_dashboard(deployment)

    return api


def _recent(alert: Alert, now: float) -> bool:
    return alert.state != "resolved" or alert.resolved_at is None or now - alert.resolved_at <= RECENT_S
