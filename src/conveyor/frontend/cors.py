"""CORS for the V2 REST API and the management API: off unless ``cors_origins`` names the browser origins.

Off, no answer carries an Access-Control-* header and a preflight OPTIONS is not answered as CORS (the
routes do not take OPTIONS: 405), so a page on another origin cannot read anything. On, Starlette's
CORSMiddleware is the outermost layer, so errors (401, 4xx, 5xx) carry the headers too and a browser
shows the client the real answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

# What a browser script may read of an answer besides the CORS-safelisted headers.
EXPOSED = ["x-request-id", "inference-header-content-length", "retry-after"]


def add_cors(app: Starlette, origins: Sequence[str]) -> None:
    """Let ``origins`` call ``app`` from a browser (any method and header; no cookies: tokens are
    bearer headers); nothing when ``origins`` is empty."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["*"],
        expose_headers=EXPOSED,
        max_age=600,
    )
