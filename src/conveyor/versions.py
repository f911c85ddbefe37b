"""Served model versions by (name, version): a name alone means its highest version; aliases are extra keys.

One index for a replica's DataPlane (versions → models) and the gateway's routing table (versions → routes),
so both order versions and word "not served here" the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from conveyor.errors import Conflict, NotFound

T = TypeVar("T")


def version_order(v: str | None) -> tuple[int, int, str]:
    """Numeric versions order numerically and above names; no version is lowest."""
    if v is None:
        return (0, 0, "")
    return (2, int(v), v) if v.isdigit() else (1, 0, v)


class VersionIndex(Generic[T]):
    """Dict lookups from (name, version-or-alias) to an item; NotFound names what is served instead."""

    def __init__(self, items: Iterable[tuple[str, str | None, T]]) -> None:
        self._items: dict[tuple[str, str | None], T] = {}
        for name, version, item in items:
            if (name, version) in self._items:
                raise Conflict(f"model {name!r} version {version!r} is served twice")
            self._items[(name, version)] = item
        self._versions: dict[str, list[str | None]] = {}
        for name, version in sorted(self._items, key=lambda k: version_order(k[1])):
            self._versions.setdefault(name, []).append(version)
        self._default = {name: self._items[(name, vs[-1])] for name, vs in self._versions.items()}
        self._by_key = dict(self._items)  # versions and, once added, aliases

    def add_alias(self, name: str, alias: str, version: str) -> None:
        """``name@alias`` (or ``/versions/alias``) answers as ``version``, which must be served."""
        if (name, version) not in self._items:
            raise NotFound(f"alias {name}@{alias} points at version {version!r}, which is not served")
        self._by_key.setdefault((name, alias), self._items[(name, version)])

    def items(self) -> dict[tuple[str, str | None], T]:
        """Each served (name, version) once, aliases left out."""
        return self._items

    def versions(self, name: str) -> list[str]:
        """The served versions of ``name``, lowest first."""
        return [v for v in self._versions.get(name, []) if v is not None]

    def find(self, name: str, version: str | None = None) -> T | None:
        """``get`` without the error: None when nothing is served as (name, version)."""
        return self._default.get(name) if version is None else self._by_key.get((name, version))

    def get(self, name: str, version: str | None = None) -> T:
        found = self.find(name, version)
        if found is not None:
            return found
        if name not in self._versions:
            served = ", ".join(sorted(self._versions)) or "none"
            raise NotFound(f"model {name!r} is not served here (served: {served})")
        versions = ", ".join(self.versions(name)) or "none"
        raise NotFound(f"model {name!r} has no version {version!r} here (served versions: {versions})")
