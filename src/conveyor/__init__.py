"""Conveyor: from a trained model file to a versioned, fast, standards-compliant endpoint.

The public Python API; everything else is internal. ``__all__`` is pinned by a test.
"""

from conveyor.api import Model, load, open_registry, register

__version__ = "0.1.0"

__all__ = ["Model", "__version__", "load", "open_registry", "register"]
