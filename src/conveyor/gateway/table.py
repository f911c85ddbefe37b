"""The routing table a gateway applies: model name and version (or an alias, resolved when the stack
starts) → replicas.

A bare name reaches the route marked ``default`` (the deployment's current version, which after a rollback is
not the highest), or the highest version when none of that name is marked. A name in a rollout has a split
(gateway/split.py), kept on that route: a request without a version that finds one there is divided between
the split's versions; every other request pays one attribute read for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.errors import Conflict
from conveyor.gateway.replica import Replica
from conveyor.gateway.split import Split
from conveyor.protocol.table import Hold, SplitSpec
from conveyor.versions import VersionIndex


@dataclass(eq=False, slots=True)
class Route:
    """One served model version and the replicas serving it; ``warm`` is the one that answered last."""

    name: str
    version: str | None
    replicas: list[Replica] = field(default_factory=list)
    default: bool = False
    hold: Hold | None = None
    revision: int | None = None
    warm: Replica | None = None
    public: bool = False  # callers need no token
    split: Split | None = None
    """On the route a bare name reaches, while the name is in a rollout: how its bare requests divide."""


class RoutingTable:
    """(name, version-or-alias) → Route with dict lookups; a name alone means its default version."""

    def __init__(
        self,
        routes: Sequence[Route],
        aliases: Mapping[tuple[str, str], str] | None = None,
        splits: Sequence[SplitSpec] = (),
    ) -> None:
        self._index: VersionIndex[Route] = VersionIndex((r.name, r.version, r) for r in routes)
        for (name, alias), version in (aliases or {}).items():
            self._index.add_alias(name, alias, version)
        self._defaults: dict[str, Route] = {}
        for r in routes:
            if r.default and self._defaults.setdefault(r.name, r) is not r:
                raise Conflict(f"more than one version of {r.name!r} is marked default")
        self.splits: dict[str, Split] = {}
        for spec in splits:
            stable, candidate = (
                self._index.get(spec.name, spec.stable),
                self._index.get(spec.name, spec.candidate),
            )
            split = Split.build(spec, stable, candidate)
            if self.splits.setdefault(spec.name, split) is not split:
                raise Conflict(f"more than one split of {spec.name!r}")
            self.resolve(spec.name, None).split = split

    @property
    def routes(self) -> list[Route]:
        return list(self._index.items().values())

    def versions(self, name: str) -> list[str]:
        return self._index.versions(name)

    def find(self, name: str, version: str | None) -> Route | None:
        """``resolve`` without the error: None when nothing routes (name, version)."""
        if version is None and (route := self._defaults.get(name)) is not None:
            return route
        return self._index.find(name, version)

    def resolve(self, name: str, version: str | None) -> Route:
        if version is None and (route := self._defaults.get(name)) is not None:
            return route
        return self._index.get(name, version)
