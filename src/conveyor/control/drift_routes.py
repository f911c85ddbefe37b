"""``GET /api/v1/deployments/{name}/drift``: each served version's input drift (``conveyor describe``).

The gauges come from the stack history the control plane scrapes (the worst replica of each version); what
each version's drift is measured against (or why it is not) from the version's reference statistics.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from conveyor import errors
from conveyor.observe.drift import PSI_DRIFT, PSI_WARN, status
from conveyor.observe.history import StackHistory
from conveyor.observe.series import drift
from conveyor.registry import Registry
from conveyor.registry.refs import parse_ref
from conveyor.security.tokens import Principal


def drift_routes(registry: Registry, state: Any, read: Any) -> APIRouter:
    api = APIRouter()

    @api.get("/deployments/{name}/drift", tags=["deployments"])
    async def deployment_drift(name: str, who: Principal = read) -> dict[str, Any]:
        """Per version (the one the deployment names, and any other still reporting): what drift is
        measured against (``reference``), and per feature the population stability index, the mean shift
        in reference standard deviations and a status: ok below 0.1, warn below 0.25, drift from 0.25."""
        history: StackHistory | None = getattr(state, "history", None)
        return await run_in_threadpool(_drift, registry, history, name)

    return api


def _drift(registry: Registry, history: StackHistory | None, name: str) -> dict[str, Any]:
    info = registry.deployments.get(name)  # NotFound: 404
    ref = parse_ref(info.model or info.spec.get("spec", {}).get("model", ""))
    gauges = drift(history, {name}) if history is not None else {}
    current = ref.version if ref.version is not None else _resolved(registry, info.model or "")
    versions = sorted({*gauges, *([str(current)] if current is not None else [])}, key=_number)
    out = []
    for version in versions:
        features = [
            {
                "feature": feature,
                "psi": values.get("psi"),
                "mean_shift": values.get("mean_shift"),
                "status": None if values.get("psi") is None else status(values["psi"]),
            }
            for feature, values in sorted(gauges.get(version, {}).items())
        ]
        out.append(
            {"version": version, "reference": _reference(registry, ref.name, version), "features": features}
        )
    return {"deployment": name, "thresholds": {"warn": PSI_WARN, "drift": PSI_DRIFT}, "versions": out}


def _resolved(registry: Registry, model: str) -> int | None:
    try:
        return registry.resolve(model).version
    except errors.ConveyorError:
        return None


def _reference(registry: Registry, model: str, version: str) -> dict[str, Any]:
    """The reference's summary (not its bins): source, rows, features; or why there is none."""
    try:
        meta = registry.resolve(f"{model}:{version}").metadata
    except errors.ConveyorError as exc:
        return {"available": False, "reason": exc.message}
    reference = meta.get("reference")
    if not isinstance(reference, dict):
        return {"available": False, "reason": "registered before reference statistics: register it again"}
    if not reference.get("available"):
        return {"available": False, "reason": reference.get("reason")}
    keep = ("available", "source", "rows", "bins", "skipped")
    return {**{k: reference.get(k) for k in keep}, "features": len(reference.get("features", []))}


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
