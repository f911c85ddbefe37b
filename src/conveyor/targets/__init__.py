"""Where replicas run. ``local``: supervised replica processes on this machine."""

from conveyor.targets.backoff import Backoff
from conveyor.targets.local import LocalTarget, ReplicaSlot

__all__ = ["Backoff", "LocalTarget", "ReplicaSlot"]
