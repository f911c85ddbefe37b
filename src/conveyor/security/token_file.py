"""``conveyor serve --token-file FILE``: the bearer tokens a one-command server accepts, one per line.

Kept as sha256 digests only; any string of 16 or more characters is a token (a Conveyor token, or one the
operator's secret store made). Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from conveyor.errors import InvalidInput, Unauthenticated
from conveyor.security.tokens import Principal, token_from_header

MIN_TOKEN_CHARS = 16
_PREDICT = frozenset({"predict"})


class FileTokens:
    """Any token listed in the file may call every model served."""

    def __init__(self, path: Path) -> None:
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        tokens = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not tokens:
            raise InvalidInput(f"token file {path} lists no token (one per line)")
        short = [
            i for i, t in enumerate(tokens, 1) if len(t) < MIN_TOKEN_CHARS or any(c.isspace() for c in t)
        ]
        if short:
            raise InvalidInput(
                f"token file {path}: token {short[0]} is shorter than {MIN_TOKEN_CHARS} characters or has "
                "spaces; make one with `conveyor tokens create` or `openssl rand -hex 32`"
            )
        self._digests = {hashlib.sha256(t.encode()).hexdigest(): i for i, t in enumerate(tokens, 1)}

    def __len__(self) -> int:
        return len(self._digests)

    def authenticate(self, authorization: str | None) -> Principal:
        token = token_from_header(authorization)
        line = self._digests.get(hashlib.sha256(token.encode()).hexdigest())
        if line is None:
            raise Unauthenticated("invalid token")
        return Principal(f"token-file:{line}", "predictor", actions=_PREDICT)
