"""Conveyor: from a trained model file to a versioned, fast, standards-compliant endpoint.

The public Python API; everything else is internal. ``__all__`` is pinned by a test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.api import Model, load, open_registry, register

__version__ = "0.1.0"

__all__ = ["Model", "__version__", "load", "open_registry", "register"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: every `conveyor` command imports this package, and most never need the Python API
    # (numpy and the registry behind it cost a tenth of a second at each start).
    if name in ("Model", "load", "open_registry", "register"):
        from conveyor import api

        return getattr(api, name)
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
