"""Bearer tokens and roles: the token format, its salted hash, what each role may do, and the verifier that
servers ask on every request (docs/security.md).

A token reads ``cvy_<id>_<secret>``: ``id`` (16 hex digits) is public and finds the stored record, ``secret``
(256 random bits) is shown once and kept only as ``sha256(salt + secret)``. A fast hash is the right one here:
a slow key-derivation function protects guessable passwords, and a 256-bit secret cannot be guessed, while a
KDF would cost milliseconds on every request.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from conveyor.errors import InvalidInput, PermissionDenied, Unauthenticated

Role = Literal["admin", "deployer", "viewer", "predictor", "gateway", "edge"]
Action = Literal["read", "deploy", "predict", "admin", "route", "edge"]
ROLES: tuple[Role, ...] = ("admin", "deployer", "viewer", "predictor", "gateway", "edge")
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    # admin: everything, tokens and the audit log included
    "admin": frozenset({"read", "deploy", "predict", "admin", "route", "edge"}),
    # deployer: registers models, changes deployments, reads, and calls what it deployed
    "deployer": frozenset({"read", "deploy", "predict"}),
    "viewer": frozenset({"read"}),
    # predictor: inference only, on the models its glob matches (all when it has none)
    "predictor": frozenset({"predict"}),
    # gateway: follows the routing table and reports load (a `conveyor gateway` on another machine)
    "gateway": frozenset({"route"}),
    # edge: an edge node following a deployment (conveyor edge run): registers, reads the version it should
    # serve, downloads its artifact, reports heartbeats; nothing else (docs/edge.md)
    "edge": frozenset({"edge"}),
}
ROLE_HELP = {
    "admin": "everything, tokens and the audit log included",
    "deployer": "register models, apply, scale, roll back, delete; read; call inference",
    "viewer": "read deployments, models, replicas, endpoints",
    "predictor": "call inference (only the models matching --models, when given)",
    "gateway": "follow the routing table and report load (for `conveyor gateway` on another machine)",
    "edge": "follow a deployment as an edge node: download its artifacts, report heartbeats",
}
PREFIX = "cvy_"
_TOKEN = re.compile(r"cvy_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_BEARER = "bearer "
CACHE_LIMIT = 4096
"""Verified header values a verifier remembers (a dict lookup instead of a hash); cleared when full."""


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str, str]:
    """A fresh token: (token, token_id, salt, hash); only the last three are stored."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    return f"{PREFIX}{token_id}_{secret}", token_id, salt, hash_secret(salt, secret)


def check_role(role: str) -> Role:
    if role not in ROLE_ACTIONS:
        raise InvalidInput(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def check_models_glob(glob: str | None) -> str | None:
    if glob is None:
        return None
    if not glob or len(glob) > 256 or any(c.isspace() for c in glob):
        raise InvalidInput(f"invalid --models glob {glob!r}: a non-empty pattern such as 'iris*' or 'iris'")
    return glob


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token, as the verifier needs it (never the token itself)."""

    token_id: str
    name: str
    role: str
    salt: str
    hash: str
    models: str | None = None
    rate_limit: float | None = None
    expires_at: float | None = None  # unix time; None: never
    revoked: bool = False

    def to_doc(self) -> dict[str, Any]:
        """The wire form pushed to gateways (salted hashes; no secret)."""
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role,
            "salt": self.salt,
            "hash": self.hash,
            "models": self.models,
            "rateLimit": self.rate_limit,
            "expiresAt": self.expires_at,
            "revoked": self.revoked,
        }

    @classmethod
    def from_doc(cls, doc: Any) -> TokenRecord:
        if not isinstance(doc, dict):
            raise InvalidInput("token record: not an object")
        try:
            return cls(
                token_id=str(doc["id"]),
                name=str(doc["name"]),
                role=check_role(str(doc["role"])),
                salt=str(doc["salt"]),
                hash=str(doc["hash"]),
                models=None if doc.get("models") is None else str(doc["models"]),
                rate_limit=None if doc.get("rateLimit") is None else float(doc["rateLimit"]),
                expires_at=None if doc.get("expiresAt") is None else float(doc["expiresAt"]),
                revoked=bool(doc.get("revoked", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"token record: {exc}") from None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the token's name (the actor in the audit log) and what it may do."""

    name: str
    role: str
    token_id: str | None = None
    models: str | None = None
    rate_limit: float | None = None
    actions: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        return f"token:{self.name}" if self.token_id else self.name

    def allows(self, action: str, model: str | None = None) -> bool:
        if action not in self.actions:
            return False
        if action == "predict" and model is not None and self.models is not None and self.role == "predictor":
            return fnmatch.fnmatchcase(model, self.models)
        return True

    def require(self, action: str, model: str | None = None) -> None:
        """PermissionDenied naming the role and the action unless the principal may do it."""
        if self.allows(action, model):
            return
        if action == "predict" and model is not None and action in self.actions:
            raise PermissionDenied(
                f"token {self.name!r} may call only the models matching {self.models!r}, not {model!r}"
            )
        raise PermissionDenied(f"token {self.name!r} (role {self.role}) may not {_VERBS.get(action, action)}")


_VERBS = {
    "read": "read the management API",
    "deploy": "change deployments",
    "predict": "call inference",
    "admin": "manage tokens or read the audit log",
    "route": "follow the routing table",
    "edge": "follow a deployment as an edge node",
}
LOCAL = Principal("local", "admin", actions=ROLE_ACTIONS["admin"])
"""Who an open server (``conveyor serve`` on loopback, a public deployment) answers: no token asked."""


def principal_of(record: TokenRecord) -> Principal:
    return Principal(
        record.name, record.role, record.token_id, record.models, record.rate_limit, ROLE_ACTIONS[record.role]
    )


def token_from_header(value: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` value; Unauthenticated when there is none."""
    if value is None or not value.strip():
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    if value[: len(_BEARER)].lower() != _BEARER:
        raise Unauthenticated("malformed Authorization header: use 'Bearer <token>'")
    return value[len(_BEARER) :].strip()


class Verifier:
    """Checks tokens against the current records; ``replace`` swaps them all at once (a revocation pushed by
    the control plane), which also forgets every cached verification."""

    def __init__(self, records: Iterable[TokenRecord] = ()) -> None:
        self._records: dict[str, TokenRecord] = {}
        self._cache: dict[str | None, tuple[Principal, float | None]] = {}
        self.replace(records)

    def replace(self, records: Iterable[TokenRecord]) -> None:
        self._records = {r.token_id: r for r in records}
        self._cache = {}

    @property
    def records(self) -> list[TokenRecord]:
        return list(self._records.values())

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; Unauthenticated saying why not."""
        cached = self._cache.get(authorization)
        if cached is not None:
            principal, expires_at = cached
            if expires_at is None or time.time() < expires_at:
                return principal
        token = token_from_header(authorization)  # raises for None: only header values get cached
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise Unauthenticated("malformed token: Conveyor tokens read cvy_<id>_<secret>")
        token_id, secret = match.groups()
        record = self._records.get(token_id)
        if record is None or not hmac.compare_digest(hash_secret(record.salt, secret), record.hash):
            raise Unauthenticated("invalid token")
        if record.revoked:
            raise Unauthenticated(f"token {record.name!r} was revoked")
        if record.expires_at is not None and time.time() >= record.expires_at:
            raise Unauthenticated(f"token {record.name!r} expired")
        principal = principal_of(record)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache = {}
        self._cache[authorization] = (principal, record.expires_at)
        return principal


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``15m``, ``90s`` (or a bare number of days); InvalidInput otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if m is None or float(m.group(1)) <= 0:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30d, 12h, 15m")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 86400}[m.group(2)]
    return float(m.group(1)) * unit


def unix(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()
