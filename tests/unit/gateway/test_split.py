"""Choosing the variant of a split: weights, A/B by header, user header or cookie (sticky), mirror/compare."""

from __future__ import annotations

import random

import pytest

from conveyor.gateway import Route
from conveyor.gateway.split import BUCKETS, Headers, Split, cookie_value, user_bucket
from conveyor.protocol.table import ABMatch, SplitSpec

STABLE, CANDIDATE = Route("lr", "1"), Route("lr", "2")


def _split(
    weight: float = 10.0,
    ab: ABMatch | None = None,
    seed: str = "rollout-7",
    mirror: float = 0.0,
    compare: float = 0.0,
) -> Split:
    spec = SplitSpec("lr", "1", "2", weight, mirror, compare, ab=ab, seed=seed)
    return Split.build(spec, STABLE, CANDIDATE)


AB_USER = ABMatch(user_header="X-User-Id")
AB_ALL = ABMatch(header="X-Variant", header_value="beta", cookie="uid", user_header="x-user-id")


def _user(uid: str) -> Headers:
    return [(b"content-type", b"application/json"), (b"x-user-id", uid.encode())]


def test_the_user_hash_is_blake2b_of_seed_and_id_the_same_in_every_process() -> None:
    # Pinned: Python's hash() is salted per process, so two gateways would disagree about a user.
    assert user_bucket("rollout-7", b"alice") == 6910
    assert user_bucket("rollout-8", b"alice") != user_bucket("rollout-7", b"alice")
    assert all(0 <= user_bucket("s", str(i).encode()) < BUCKETS for i in range(100))


def test_one_user_always_gets_the_same_variant_whatever_the_random_draws() -> None:
    split = _split(50.0, AB_USER)
    for uid in ("alice", "bob", "carol", "dave"):
        seen = {split.to_candidate(_user(uid), random.Random(i)) for i in range(20)}
        assert len(seen) == 1, uid
    # A split built again from the same table (another gateway, a new table) agrees.
    again = _split(50.0, AB_USER)
    assert all(
        again.to_candidate(_user(u), random.Random()) == split.to_candidate(_user(u), random.Random())
        for u in map(str, range(200))
    )


def test_ten_thousand_users_at_weight_10_send_10_percent_to_the_candidate() -> None:
    split = _split(10.0, AB_USER)
    rng = random.Random(0)
    share = sum(split.to_candidate(_user(f"user-{i}"), rng) for i in range(10_000)) / 10_000
    assert 0.085 <= share <= 0.115, share


def test_raising_the_weight_keeps_every_candidate_user_on_the_candidate() -> None:
    low, high = _split(10.0, AB_USER), _split(25.0, AB_USER)
    rng = random.Random(0)
    users = [_user(f"u{i}") for i in range(2000)]
    at_low = {i for i, h in enumerate(users) if low.to_candidate(h, rng)}
    at_high = {i for i, h in enumerate(users) if high.to_candidate(h, rng)}
    assert at_low < at_high


def test_the_header_match_sends_to_the_candidate_at_any_weight() -> None:
    split = _split(0.0, AB_ALL)
    rng = random.Random(0)
    assert split.to_candidate([(b"x-variant", b"beta")], rng)
    assert not split.to_candidate([(b"x-variant", b"gamma")], rng)
    assert not split.to_candidate([], rng)


def test_the_cookie_holds_the_user_id_when_there_is_no_user_header() -> None:
    split = _split(30.0, ABMatch(cookie="uid"))
    rng = random.Random(0)
    for i in range(300):
        by_cookie: Headers = [(b"cookie", f'theme=dark; uid="{i}"; x=1'.encode())]
        expected = user_bucket("rollout-7", str(i).encode()) < 3000
        assert split.to_candidate(by_cookie, rng) == expected


def test_the_user_header_comes_before_the_cookie() -> None:
    split = _split(50.0, AB_ALL)
    headers: Headers = [(b"cookie", b"uid=someone-else"), (b"x-user-id", b"alice")]
    assert split.user(headers) == b"alice"
    assert split.user([(b"cookie", b"uid=bob")]) == b"bob"


@pytest.mark.parametrize("weight", [10.0, 100.0])
def test_a_request_without_a_user_id_goes_to_stable_every_time(weight: float) -> None:
    split = _split(weight, AB_ALL)
    rng = random.Random(0)
    assert not any(split.to_candidate([(b"content-type", b"application/json")], rng) for _ in range(100))


def test_grpc_metadata_pairs_route_as_http_headers_do() -> None:
    split = _split(50.0, AB_ALL)
    rng = random.Random(0)
    for i in range(200):
        http: Headers = [(b"x-user-id", f"u{i}".encode())]
        grpc: Headers = [("x-user-id", f"u{i}")]
        assert split.to_candidate(http, rng) == split.to_candidate(grpc, rng)
    assert split.to_candidate([("x-variant", "beta")], rng)


def test_cookie_parsing() -> None:
    assert cookie_value([(b"cookie", b"a=1; uid=42")], "uid") == b"42"
    assert cookie_value([(b"cookie", b"a=1"), (b"cookie", b'uid="7"')], "uid") == b"7"
    assert cookie_value([(b"cookie", b"xuid=1; uid2=3")], "uid") is None


@pytest.mark.parametrize(("weight", "low", "high"), [(0.0, 0, 0), (100.0, 2000, 2000), (30.0, 520, 680)])
def test_without_ab_the_weight_is_a_random_share_of_requests(weight: float, low: int, high: int) -> None:
    split = _split(weight)
    rng = random.Random(1)
    n = sum(split.to_candidate(_user("same-user"), rng) for _ in range(2000))
    assert low <= n <= high


def test_mirror_sends_stable_answered_requests_to_the_candidate_and_compare_the_reverse() -> None:
    rng = random.Random(0)
    shadow = _split(0.0, mirror=100.0)
    assert shadow.second(False, rng) is CANDIDATE and shadow.second(True, rng) is None
    canary = _split(20.0, compare=100.0)
    assert canary.second(True, rng) is STABLE and canary.second(False, rng) is None
    half = _split(0.0, mirror=50.0)
    n = sum(half.second(False, rng) is not None for _ in range(2000))
    assert 900 <= n <= 1100
