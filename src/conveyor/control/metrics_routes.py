"""``GET /metrics`` of the control plane: the whole stack's metrics in one scrape (docs/metrics.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from conveyor.control.auth import ApiAuth, requires
from conveyor.observe.aggregate import StackScraper
from conveyor.observe.collectors import CONTENT_TYPE
from conveyor.security.tokens import Principal


def metrics_routes(scraper: StackScraper, auth: ApiAuth) -> APIRouter:
    """Scraped when asked (not the history's last point): Prometheus sees each process as it is now."""
    router = APIRouter()
    read: Any = requires(auth, "read")

    @router.get("/metrics", tags=["control plane"], response_class=Response)
    async def metrics(who: Principal = read) -> Response:
        """Every process of the stack in the Prometheus text format, each sample labelled with its
        ``component`` and ``instance``; a viewer (or higher) token."""
        return Response(await scraper.exposition(), media_type=CONTENT_TYPE)

    return router
