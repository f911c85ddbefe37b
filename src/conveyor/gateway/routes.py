"""The routing table: model name and version (or an alias, resolved when the stack starts) → replicas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.gateway.replica import Replica
from conveyor.server.versions import VersionIndex


@dataclass(eq=False, slots=True)
class Route:
    """One served model version and the replicas serving it."""

    name: str
    version: str | None
    replicas: list[Replica] = field(default_factory=list)


class RoutingTable:
    """(name, version-or-alias) → Route with dict lookups; a name alone means its highest version."""

    def __init__(self, routes: Sequence[Route], aliases: Mapping[tuple[str, str], str] | None = None) -> None:
        self._index: VersionIndex[Route] = VersionIndex((r.name, r.version, r) for r in routes)
        for (name, alias), version in (aliases or {}).items():
            self._index.add_alias(name, alias, version)

    @property
    def routes(self) -> list[Route]:
        return list(self._index.items().values())

    def versions(self, name: str) -> list[str]:
        return self._index.versions(name)

    def resolve(self, name: str, version: str | None) -> Route:
        return self._index.get(name, version)
