"""What every spec module shares: the base model (camelCase, strict, frozen), validation errors worded as
written, and the readers of durations and URLs, so a field means the same wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from conveyor.spec.units import parse_duration as parse_duration  # where callers have found it

_HTTP_URL = re.compile(r"^https?://[^/\s]+")
T = TypeVar("T", str, float)


def invalid(message: str) -> PydanticCustomError:
    """A validation error whose text is ``message`` as written (braces would be template fields)."""
    return PydanticCustomError("conveyor", message.replace("{", "(").replace("}", ")"))


def positive_duration(text: str, what: str = "interval") -> str:
    """``text`` unchanged when it is a duration above zero; else the validation error, ``what`` naming it."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if seconds <= 0:
        raise invalid(f"{what} must be > 0")
    return text


def http_url(url: str, what: str = "URL") -> str:
    """``url`` unchanged when it is an http(s) URL with a host; else the validation error naming ``what``."""
    if not _HTTP_URL.match(url):
        raise invalid(f"invalid {what} {url!r}: use http://HOST[:PORT]/PATH or https://...")
    return url


def first_repeated(values: Sequence[T]) -> T | None:
    """The first (in sort order) of the values listed more than once, or None."""
    twice = sorted({v for v in values if values.count(v) > 1})
    return twice[0] if twice else None


class SpecModel(BaseModel):
    """Base of every spec object: camelCase aliases, no unknown fields, no silent coercion, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
    )
