"""Replica data plane: the transport-neutral DataPlane, the replica's REST app, and ``serve``.

The names below load on first use, so importing the package (or one module of it) loads no other module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.server.app import create_app, serve
    from conveyor.server.dataplane import DataPlane

__all__ = ["DataPlane", "create_app", "serve"]
_WHERE = {"DataPlane": "dataplane", "create_app": "app", "serve": "app"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"conveyor.server.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'conveyor.server' has no attribute {name!r}")
