"""Who may call a gateway's models: a token from the control plane's table (or a ``conveyor serve`` token
file), checked with the request's head, before its body is read; public routes need none."""

from __future__ import annotations

from typing import Protocol

from conveyor.security.ratelimit import RateLimits
from conveyor.security.tokens import Principal, TokenRecord, Verifier


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None) -> Principal: ...


class GatewayAuth:
    """A request's principal must allow ``predict`` on the model; a token with a rate limit is held to it."""

    def __init__(self, verifier: Authenticator | None = None) -> None:
        self.verifier: Authenticator = verifier if verifier is not None else Verifier()
        self.limits = RateLimits()
        self._records: tuple[TokenRecord, ...] | None = None

    def update(self, records: tuple[TokenRecord, ...]) -> None:
        """The control plane's current tokens (a revoked one fails from the next request on)."""
        if records == self._records:
            return
        self._records = records
        if isinstance(self.verifier, Verifier):
            self.verifier.replace(records)
        self.limits.keep_only({r.token_id for r in records})

    def check(self, model: str, authorization: str | None) -> Principal:
        """Unauthenticated, PermissionDenied, or Overloaded over the token's rate; else its principal."""
        principal = self.verifier.authenticate(authorization)
        principal.require("predict", model)
        if principal.rate_limit is not None and principal.token_id is not None:
            self.limits.check(principal.token_id, principal.name, principal.rate_limit)
        return principal
