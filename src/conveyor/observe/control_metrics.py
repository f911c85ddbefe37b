"""The control plane's own counters: replica restarts, autoscaler decisions, failed scrapes of its stack, and
where the replicas' states and its leadership come from; built into metric families at scrape
(observe/collectors.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any


class ControlMetrics:
    """The control plane's counters (restarts, autoscaler decisions) and where its replicas' states come
    from: ``replicas`` returns ReplicaStatus dicts (``deployment``, ``version``, ``state``)."""

    def __init__(self, replicas: Callable[[], Iterable[dict[str, Any]]] | None = None) -> None:
        self.replicas = replicas
        self.restarts: Counter[tuple[str, str]] = Counter()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.scrape_errors: Counter[str] = Counter()  # by instance: the stack's scraper counts here
        self.leader: Callable[[], tuple[str, bool]] | None = None
        """This control plane's holder id and whether it leads now (control/leader.py); None: no election."""

    def restarted(self, deployment: str, version: str | None) -> None:
        self.restarts[(deployment, version or "")] += 1

    def scaled(self, deployment: str, up: bool) -> None:
        self.decisions[(deployment, "up" if up else "down")] += 1

    def replica_states(self) -> Counter[tuple[str, str, str]]:
        states: Counter[tuple[str, str, str]] = Counter()
        for row in self.replicas() if self.replicas is not None else ():
            states[(str(row["deployment"]), str(row.get("version") or ""), str(row["state"]))] += 1
        return states
