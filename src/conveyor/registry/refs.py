"""Model references (``NAME``, ``NAME:VERSION``, ``NAME@ALIAS``) and the rules for model and alias names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor import errors

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_NAME = re.compile(rf"^{NAME_PATTERN}$")
_RULE = "1-128 characters: letters, digits, '_', '.', '-', starting with a letter or digit"
MAX_VERSION = 2**63 - 1  # the registry stores versions as 64-bit integers


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference: at most one of ``version`` and ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise InvalidInput."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.InvalidInput(f"invalid model name {name!r}: use {_RULE}")
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if valid; all-digit aliases are refused because they read as version numbers."""
    if not isinstance(alias, str) or not _NAME.match(alias):
        raise errors.InvalidInput(f"invalid alias {alias!r}: use {_RULE}")
    if alias.isdigit():
        raise errors.InvalidInput(
            f"invalid alias {alias!r}: an alias cannot be all digits (it reads as a version)"
        )
    return alias


def check_version(version: int) -> int:
    """Return ``version`` if it is a positive int, else raise InvalidInput."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise errors.InvalidInput(
            f"invalid version {version!r}: versions are integers from 1 to {MAX_VERSION}"
        )
    return version


def parse_ref(ref: str) -> ModelRef:
    """Parse ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``; InvalidInput names what is wrong."""
    if not isinstance(ref, str) or not ref:
        raise errors.InvalidInput(f"invalid model reference {ref!r}: use NAME, NAME:VERSION or NAME@ALIAS")
    if ":" in ref and "@" in ref:
        raise errors.InvalidInput(f"invalid model reference {ref!r}: give a version or an alias, not both")
    if ":" in ref:
        name, _, version = ref.partition(":")
        if not version.isascii() or not version.isdigit() or int(version) < 1:
            raise errors.InvalidInput(
                f"invalid model reference {ref!r}: the version after ':' must be a positive integer"
            )
        if int(version) > MAX_VERSION:
            raise errors.InvalidInput(f"invalid model reference {ref!r}: the version is above {MAX_VERSION}")
        return ModelRef(check_name(name), version=int(version))
    if "@" in ref:
        name, _, alias = ref.partition("@")
        return ModelRef(check_name(name), alias=check_alias(alias))
    return ModelRef(check_name(ref))
