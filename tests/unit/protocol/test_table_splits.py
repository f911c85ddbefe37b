"""The routing table's splits (a deployment in a rollout): round trip, defaults, and every bad one refused."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import InvalidInput
from conveyor.protocol.table import ABMatch, SplitSpec, parse_table


def _route(version: str, default: bool = False) -> dict[str, Any]:
    replicas = [{"id": f"lr-{version}", "address": f"unix:/tmp/lr-{version}.sock"}]
    return {"name": "lr", "version": version, "default": default, "replicas": replicas, "hold": None}


SPLIT: dict[str, Any] = {
    "name": "lr",
    "stable": "1",
    "candidate": "2",
    "weight": 10.0,
    "mirror": 0.0,
    "compare": 5.0,
    "tolerance": 0.001,
    "ab": {"header": "x-variant", "headerValue": "beta", "cookie": "uid", "userHeader": "x-user-id"},
    "seed": "rollout-3",
}


def _table(*splits: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"epoch": "e", "generation": 1, "routes": [_route("1", True), _route("2")]}
    if splits:
        doc["splits"] = list(splits)
    return doc


def test_a_split_round_trips_through_its_document() -> None:
    snap = parse_table(_table(SPLIT))
    ab = ABMatch("x-variant", "beta", "uid", "x-user-id")
    assert snap.splits == (SplitSpec("lr", "1", "2", 10.0, 0.0, 5.0, 0.001, ab, "rollout-3"),)
    assert snap.to_doc()["splits"] == [SPLIT]
    assert parse_table(snap.to_doc()) == snap


def test_a_table_without_splits_keeps_its_old_document() -> None:
    snap = parse_table(_table())
    assert snap.splits == () and "splits" not in snap.to_doc()


def test_a_split_needs_only_its_versions() -> None:
    (split,) = parse_table(_table({"name": "lr", "stable": "1", "candidate": "2"})).splits
    assert split == SplitSpec("lr", "1", "2")
    assert (split.weight, split.mirror, split.compare, split.tolerance, split.ab, split.seed) == (
        0.0,
        0.0,
        0.0,
        1e-5,
        None,
        "",
    )
    assert parse_table(_table({**SPLIT, "weight": 100, "ab": {"cookie": "uid"}})).splits[0].weight == 100.0


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({**SPLIT, "name": "other"}, r"splits\[0\]\.stable other:1 is not a route of the table"),
        ({**SPLIT, "candidate": "3"}, r"splits\[0\]\.candidate lr:3 is not a route of the table"),
        ({**SPLIT, "candidate": "1"}, "same stable and candidate"),
        ({**SPLIT, "stable": 1}, r"splits\[0\]\.stable must be str"),
        ({k: v for k, v in SPLIT.items() if k != "candidate"}, r"splits\[0\]\.candidate is missing"),
        ({**SPLIT, "weight": 100.5}, r"splits\[0\]\.weight must be a percent from 0 to 100"),
        ({**SPLIT, "mirror": -1}, r"splits\[0\]\.mirror must be a percent"),
        ({**SPLIT, "compare": "5"}, r"splits\[0\]\.compare must be float"),
        ({**SPLIT, "weight": float("nan")}, r"splits\[0\]\.weight must be a percent"),
        ({**SPLIT, "tolerance": -0.1}, r"splits\[0\]\.tolerance must be >= 0"),
        ({**SPLIT, "tolerance": float("inf")}, r"splits\[0\]\.tolerance must be >= 0"),
        ({**SPLIT, "seed": 3}, r"splits\[0\]\.seed must be str"),
        ({**SPLIT, "ab": []}, r"splits\[0\]\.ab must be an object"),
        ({**SPLIT, "ab": {}}, "at least one of header, cookie, userHeader"),
        ({**SPLIT, "ab": {"header": "x-variant"}}, "header and headerValue together"),
        ({**SPLIT, "ab": {"cookie": ""}}, r"splits\[0\]\.ab\.cookie must not be empty"),
        ({**SPLIT, "ab": {"userHeader": 7}}, r"splits\[0\]\.ab\.userHeader must be str"),
        ("lr", r"splits\[0\] must be an object"),
    ],
)
def test_a_bad_split_is_refused_naming_the_field(split: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_table(_table(split))


def test_one_split_per_name() -> None:
    with pytest.raises(InvalidInput, match="more than one split of 'lr'"):
        parse_table(_table(SPLIT, {**SPLIT, "weight": 20}))
    with pytest.raises(InvalidInput, match="splits must be list"):
        parse_table({**_table(), "splits": {}})
