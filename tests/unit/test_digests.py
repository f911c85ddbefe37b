"""The one digest check every artifact load runs."""

from __future__ import annotations

import hashlib

import pytest

from conveyor import errors
from conveyor.digests import check_digest, verify, verify_bytes


def test_verify_bytes_returns_the_bytes_whose_digest_matches() -> None:
    data = b"model bytes"
    assert verify_bytes("model m:1", data, hashlib.sha256(data).hexdigest()) is data


def test_a_mismatch_is_data_loss_naming_what_and_both_digests() -> None:
    expected = hashlib.sha256(b"registered").hexdigest()
    actual = hashlib.sha256(b"swapped").hexdigest()
    with pytest.raises(errors.IntegrityError) as info:
        verify_bytes("model m:1: artifact /a/b", b"swapped", expected)
    assert info.value.code == "data_loss"
    assert str(info.value) == f"model m:1: artifact /a/b is corrupt: expected sha256 {expected}, got {actual}"
    assert info.value.details == {"expected": expected, "actual": actual}


def test_truncated_bytes_are_a_mismatch() -> None:
    data = b"x" * 1000
    with pytest.raises(errors.IntegrityError, match="is corrupt"):
        verify_bytes("m", data[:200], hashlib.sha256(data).hexdigest())


def test_verify_compares_digests_already_computed() -> None:
    verify("m", "a" * 64, "a" * 64)
    with pytest.raises(errors.IntegrityError, match=f"expected sha256 {'a' * 64}, got {'b' * 64}"):
        verify("m", "a" * 64, "b" * 64)


@pytest.mark.parametrize("bad", ["", "A" * 64, "a" * 63, "g" * 64, None])
def test_check_digest_wants_64_lowercase_hex_digits(bad: object) -> None:
    with pytest.raises(errors.InvalidInput, match="expected 64 lowercase hex digits"):
        check_digest(bad)  # type: ignore[arg-type]
