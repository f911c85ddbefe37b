"""Which version answers a request that names none, while its deployment is in a rollout (a split).

A/B: a request whose header equals the split's value goes to the candidate; else its user id (a header,
else a cookie) hashes into one of 10,000 buckets, and the buckets below ``weight`` percent are the
candidate's, so one user keeps one variant (the hash is salted with the split's seed, the rollout's id, and
is blake2b: the same in every gateway process, unlike Python's ``hash``). A request with no user id goes to
stable. Any other split draws at random: ``weight`` percent of requests go to the candidate.

Then, with ``mirror`` percent of stable's requests (shadow) or ``compare`` percent of the candidate's, the
other version gets the same request too (gateway/shadow.py): the caller only ever gets the first answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING

from conveyor.protocol.table import SplitSpec

if TYPE_CHECKING:
    from conveyor.gateway.table import Route

BUCKETS = 10_000
Headers = Sequence[tuple[bytes | str, bytes | str]]
"""A request's header pairs as its front end has them: (bytes, bytes) from HTTP, with lower-case names;
(str, str or bytes) from gRPC metadata, whose keys are lower case."""


def user_bucket(seed: str, user: bytes) -> int:
    """The user's bucket in [0, BUCKETS): the same for the same seed and user id in every process."""
    digest = blake2b(seed.encode() + b"\0" + user, digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def header_values(headers: Headers, name: str) -> list[bytes]:
    """Every value of the header ``name`` (lower case), as bytes."""
    as_bytes = name.encode("latin-1")
    found: list[bytes] = []
    for key, value in headers:
        if key in (as_bytes, name):
            found.append(value if isinstance(value, bytes) else value.encode())
    return found


def cookie_value(headers: Headers, name: str) -> bytes | None:
    """The value of the cookie ``name`` from the request's Cookie headers (quotes removed), if any."""
    wanted = name.encode("latin-1")
    for header in header_values(headers, "cookie"):
        for pair in header.split(b";"):
            key, eq, value = pair.strip().partition(b"=")
            if eq and key == wanted:
                value = value.strip()
                if len(value) >= 2 and value[:1] == value[-1:] == b'"':
                    value = value[1:-1]
                return value
    return None


@dataclass(eq=False, slots=True)
class Split:
    """A split as one table applies it: its two routes, and the header names lower-cased once."""

    spec: SplitSpec
    stable: Route
    candidate: Route
    header: str | None = None
    header_value: bytes = b""
    user_header: str | None = None
    cookie: str | None = None

    @classmethod
    def build(cls, spec: SplitSpec, stable: Route, candidate: Route) -> Split:
        split = cls(spec, stable, candidate)
        ab = spec.ab
        if ab is not None:
            if ab.header is not None and ab.header_value is not None:
                split.header, split.header_value = ab.header.lower(), ab.header_value.encode()
            split.user_header = None if ab.user_header is None else ab.user_header.lower()
            split.cookie = ab.cookie
        return split

    def user(self, headers: Headers) -> bytes | None:
        """The request's user id: the user header's first value, else the cookie's; None without one."""
        if self.user_header is not None:
            values = header_values(headers, self.user_header)
            if values:
                return values[0]
        if self.cookie is not None:
            return cookie_value(headers, self.cookie)
        return None

    def to_candidate(self, headers: Headers, rng: random.Random) -> bool:
        """Whether the candidate answers this request (else stable)."""
        spec = self.spec
        if spec.ab is None:
            return rng.random() * 100.0 < spec.weight
        if self.header is not None and self.header_value in header_values(headers, self.header):
            return True
        user = self.user(headers)
        return user is not None and user_bucket(spec.seed, user) < spec.weight * (BUCKETS / 100)

    def second(self, candidate_answers: bool, rng: random.Random) -> Route | None:
        """The version that also gets the request (its answer compared, never returned), if any: the
        candidate for ``mirror`` percent of stable's requests, stable for ``compare`` percent of the
        candidate's."""
        share = self.spec.compare if candidate_answers else self.spec.mirror
        if share <= 0.0 or rng.random() * 100.0 >= share:
            return None
        return self.stable if candidate_answers else self.candidate
