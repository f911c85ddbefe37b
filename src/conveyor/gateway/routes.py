"""The routing table: model name and version (or an alias, resolved when the stack starts) → replicas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.errors import NotFound
from conveyor.gateway.replica import Replica


def version_order(v: str | None) -> tuple[int, int, str]:
    """Numeric versions order numerically and above names; no version is lowest (as a replica orders them)."""
    if v is None:
        return (0, 0, "")
    return (2, int(v), v) if v.isdigit() else (1, 0, v)


@dataclass(eq=False, slots=True)
class Route:
    """One served model version and the replicas serving it."""

    name: str
    version: str | None
    replicas: list[Replica] = field(default_factory=list)


class RoutingTable:
    """(name, version-or-alias) → Route with dict lookups; a name alone means its highest version."""

    def __init__(self, routes: Sequence[Route], aliases: Mapping[tuple[str, str], str] | None = None) -> None:
        self._routes: dict[tuple[str, str | None], Route] = {(r.name, r.version): r for r in routes}
        self._versions: dict[str, list[str | None]] = {}
        for name, version in sorted(self._routes, key=lambda k: version_order(k[1])):
            self._versions.setdefault(name, []).append(version)
        self._default = {name: self._routes[(name, vs[-1])] for name, vs in self._versions.items()}
        for (name, alias), version in (aliases or {}).items():
            if (name, version) not in self._routes:
                raise NotFound(f"alias {name}@{alias} points at version {version!r}, which is not served")
            self._routes.setdefault((name, alias), self._routes[(name, version)])

    @property
    def routes(self) -> list[Route]:
        return list({id(r): r for r in self._routes.values()}.values())

    def versions(self, name: str) -> list[str]:
        return [v for v in self._versions.get(name, []) if v is not None]

    def resolve(self, name: str, version: str | None) -> Route:
        found = self._default.get(name) if version is None else self._routes.get((name, version))
        if found is not None:
            return found
        if name not in self._versions:
            served = ", ".join(sorted(self._versions)) or "none"
            raise NotFound(f"model {name!r} is not served here (served: {served})")
        versions = ", ".join(self.versions(name)) or "none"
        raise NotFound(f"model {name!r} has no version {version!r} here (served versions: {versions})")
