"""Replica data plane: the transport-neutral DataPlane, the V2 REST front end, and ``serve``.

The names below load on first use, so importing one light module of the package (``server.errors``, the
HTTP error table the management API shares) does not pull in ONNX Runtime, numpy and gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.server.dataplane import DataPlane
    from conveyor.server.rest import create_app
    from conveyor.server.runner import serve

__all__ = ["DataPlane", "create_app", "serve"]
_WHERE = {"DataPlane": "dataplane", "create_app": "rest", "serve": "runner"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"conveyor.server.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'conveyor.server' has no attribute {name!r}")
