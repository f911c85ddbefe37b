from __future__ import annotations

import pytest

from conveyor import errors
from conveyor.registry import ModelRef, parse_ref
from conveyor.registry.refs import check_version


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("iris", ModelRef("iris")),
        ("iris:3", ModelRef("iris", version=3)),
        ("iris@production", ModelRef("iris", alias="production")),
        ("my-model_v1.2", ModelRef("my-model_v1.2")),
        ("m@v2", ModelRef("m", alias="v2")),
    ],
)
def test_valid_refs_parse(ref: str, expected: ModelRef) -> None:
    assert parse_ref(ref) == expected
    assert str(parse_ref(ref)) == ref


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "use NAME, NAME:VERSION or NAME@ALIAS"),
        ("iris:", "must be a positive integer"),
        ("iris:0", "must be a positive integer"),
        ("iris:-1", "must be a positive integer"),
        ("iris:abc", "must be a positive integer"),
        ("iris:1@prod", "not both"),
        ("iris@", "invalid alias"),
        ("iris@123", "cannot be all digits"),
        (":3", "invalid model name"),
        ("-iris", "invalid model name"),
        ("ir is", "invalid model name"),
        ("iris/../x", "invalid model name"),
        ("a" * 129, "invalid model name"),
    ],
)
def test_malformed_refs_are_invalid_input_saying_why(ref: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        parse_ref(ref)


def test_a_version_beyond_64_bits_is_an_invalid_reference_not_a_database_error() -> None:
    with pytest.raises(errors.InvalidInput, match="the version is above 9223372036854775807"):
        parse_ref("iris:99999999999999999999999")
    with pytest.raises(errors.InvalidInput, match="from 1 to 9223372036854775807"):
        check_version(2**63)
