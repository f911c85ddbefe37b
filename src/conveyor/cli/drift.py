"""The drift part of ``conveyor describe deployment``: per version, PSI and mean shift per input feature."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.text import Text

from conveyor.cli.client import request
from conveyor.cli.output import titled_table
from conveyor.errors import NotFound

_STYLE = {"ok": "green", "warn": "yellow", "drift": "bold red"}


def deployment_drift(url: str | None, name: str) -> dict[str, Any] | None:
    """``GET /deployments/{name}/drift``; None from a control plane older than the route (a 404: the
    deployment itself was just read)."""
    try:
        return request(url, "GET", f"/deployments/{name}/drift")
    except NotFound:
        return None


def drift_renderables(answer: dict[str, Any] | None) -> list[RenderableType]:
    """A table per version with features, or one line saying why there is none."""
    if answer is None:
        return []
    thresholds = answer.get("thresholds", {})
    out: list[RenderableType] = []
    for v in answer.get("versions", []):
        reference = v.get("reference") or {}
        version = v["version"]
        if not reference.get("available"):
            out.append(Text(f"Drift of version {version}: not measured: {reference.get('reason')}"))
            continue
        if not v.get("features"):
            out.append(Text(f"Drift of version {version}: no serving inputs sampled yet"))
            continue
        rows = [
            [
                f["feature"],
                _number(f.get("psi")),
                _number(f.get("mean_shift")),
                f"[{_STYLE.get(f.get('status'), '')}]{f.get('status') or '-'}[/]",
            ]
            for f in v["features"]
        ]
        title = (
            f"Drift of version {version} (against {reference.get('rows')} {reference.get('source')} rows; "
            f"warn at PSI {thresholds.get('warn')}, drift at {thresholds.get('drift')})"
        )
        out.append(titled_table(title, ("feature", "PSI", "mean shift (sd)", "status"), rows, right=("PSI",)))
    return out


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
