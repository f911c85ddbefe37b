"""Replica data plane: the transport-neutral DataPlane, the V2 REST front end, and ``serve``."""

from conveyor.server.dataplane import DataPlane
from conveyor.server.rest import create_app
from conveyor.server.runner import serve

__all__ = ["DataPlane", "create_app", "serve"]
