"""Tokens, roles and the verifier (security/tokens.py), rate limits (ratelimit.py), serve's token file and
which token a client sends (credentials.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor.errors import InvalidInput, Overloaded, PermissionDenied, Unauthenticated
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.security.credentials import LOCAL_ADMIN, client_token, ensure_admin_token
from conveyor.security.ratelimit import RateLimits, TokenBucket
from conveyor.security.token_file import FileTokens
from conveyor.security.tokens import (
    Principal,
    TokenRecord,
    Verifier,
    hash_secret,
    new_token,
    parse_duration,
    principal_of,
)
from conveyor.settings import Settings


def record(token_id: str, salt: str, digest: str, **kw: object) -> TokenRecord:
    fields: dict[str, object] = {"name": "t", "role": "predictor", **kw}
    return TokenRecord(token_id=token_id, salt=salt, hash=digest, **fields)  # type: ignore[arg-type]


def test_a_new_token_is_kept_as_a_salted_hash_that_only_its_secret_matches() -> None:
    token, token_id, salt, digest = new_token()
    assert token.startswith(f"cvy_{token_id}_") and len(token) == 4 + 16 + 1 + 43
    assert token.split("_", 2)[2] not in digest
    assert hash_secret(salt, token.split("_", 2)[2]) == digest
    other_salt = new_token()[2]
    assert hash_secret(other_salt, token.split("_", 2)[2]) != digest  # the same secret, another salt


def test_the_verifier_says_why_a_token_is_refused() -> None:
    token, token_id, salt, digest = new_token()
    wrong = f"cvy_{token_id}_" + "x" * 43
    v = Verifier([record(token_id, salt, digest, name="ci")])
    assert v.authenticate(f"Bearer {token}").name == "ci"
    assert v.authenticate(f"bearer {token}").name == "ci"  # the scheme is case-insensitive (RFC 7235)
    cases = {
        None: "authentication required",
        "": "authentication required",
        f"Basic {token}": "malformed Authorization header",
        "Bearer nope": "malformed token",
        f"Bearer {wrong}": "invalid token",
        "Bearer cvy_0000000000000000_" + "a" * 43: "invalid token",
    }
    for header, why in cases.items():
        with pytest.raises(Unauthenticated, match=why):
            v.authenticate(header)


def test_revoked_and_expired_tokens_are_refused_even_once_verified() -> None:
    token, token_id, salt, digest = new_token()
    v = Verifier([record(token_id, salt, digest, name="ci", expires_at=time.time() + 0.2)])
    assert v.authenticate(f"Bearer {token}").name == "ci"  # cached from here on
    time.sleep(0.25)
    with pytest.raises(Unauthenticated, match="token 'ci' expired"):
        v.authenticate(f"Bearer {token}")
    v.replace([record(token_id, salt, digest, name="ci", revoked=True)])
    with pytest.raises(Unauthenticated, match="token 'ci' was revoked"):
        v.authenticate(f"Bearer {token}")


def test_roles_allow_what_docs_security_md_says() -> None:
    def who(role: str, models: str | None = None) -> Principal:
        return principal_of(record("0" * 16, "00", "h", name=role, role=role, models=models))

    assert who("viewer").allows("read") and not who("viewer").allows("deploy")
    assert who("deployer").allows("predict", "iris")
    assert not who("gateway").allows("predict", "iris")
    scoped = who("predictor", "iris*")
    assert scoped.allows("predict", "iris-v2") and not scoped.allows("predict", "clf")
    with pytest.raises(PermissionDenied, match="only the models matching 'iris\\*', not 'clf'"):
        scoped.require("predict", "clf")
    with pytest.raises(PermissionDenied, match="role viewer\\) may not change deployments"):
        who("viewer").require("deploy")


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400 and parse_duration("12h") == 43200
    assert parse_duration("15m") == 900 and parse_duration("1.5s") == 1.5 and parse_duration("2") == 2 * 86400
    for bad in ("", "0d", "-1d", "3 years", "d"):
        with pytest.raises(InvalidInput, match="invalid duration"):
            parse_duration(bad)


def test_a_token_bucket_allows_its_rate_with_a_second_of_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(10, clock=lambda: now[0])
    assert [bucket.take() for _ in range(10)] == [0.0] * 10  # the burst
    assert bucket.take() == pytest.approx(0.1)  # then one every 1/10 s
    now[0] += 0.5
    assert sum(bucket.take() == 0.0 for _ in range(10)) == 5


def test_a_token_over_its_rate_gets_overloaded_with_retry_after() -> None:
    limits = RateLimits()
    for _ in range(3):
        limits.check("id", "web", 3)
    with pytest.raises(Overloaded, match="token 'web' is over its rate limit of 3 requests/s") as err:
        limits.check("id", "web", 3)
    assert err.value.retry_after_s >= 1


def test_serves_token_file_accepts_its_tokens_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# clients\n\n0123456789abcdef0123\n  s3cret-s3cret-s3cret  \n")
    tokens = FileTokens(path)
    assert len(tokens) == 2
    assert tokens.authenticate("Bearer s3cret-s3cret-s3cret").allows("predict", "anything")
    with pytest.raises(Unauthenticated):
        tokens.authenticate("Bearer 0123456789abcdef")
    path.write_text("short\n")
    with pytest.raises(InvalidInput, match="token 1 is shorter than 16 characters"):
        FileTokens(path)
    path.write_text("# nothing\n")
    with pytest.raises(InvalidInput, match="lists no token"):
        FileTokens(path)
    with pytest.raises(InvalidInput, match="cannot read token file"):
        FileTokens(tmp_path / "missing")


def test_the_local_admin_token_goes_to_loopback_urls_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a")) as registry:
        path, created = ensure_admin_token(registry, settings)
        assert created and path == tmp_path / "admin.token" and path.stat().st_mode & 0o777 == 0o600
        token = path.read_text().strip()
        assert Verifier(registry.tokens.records()).authenticate(f"Bearer {token}").role == "admin"
        assert ensure_admin_token(registry, settings) == (path, False)  # kept on the next start
        path.unlink()  # a lost file: a new token, the old one revoked
        _, created = ensure_admin_token(registry, settings)
        assert created
        names = [(i.name, i.state) for i in registry.tokens.list(include_revoked=True)]
        assert names == [(LOCAL_ADMIN, "revoked"), (LOCAL_ADMIN, "active")]
    token = path.read_text().strip()
    assert client_token(settings, "http://127.0.0.1:8000") == token
    assert client_token(settings, "https://localhost:8000") == token
    assert client_token(settings, "http://[::1]:8000") == token
    assert client_token(settings, "https://conveyor.example.com") is None  # never sent to another host
    assert client_token(Settings(home=tmp_path, token="cvy_env"), "https://x.example") == "cvy_env"
