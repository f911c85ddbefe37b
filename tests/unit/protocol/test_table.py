"""Parsing the control plane's routing table: what a good one becomes; every malformed one refused."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import InvalidInput
from conveyor.protocol.table import Hold, ReplicaSpec, parse_table

ROUTE: dict[str, Any] = {
    "name": "tiny",
    "version": "2",
    "deployment": "tiny",
    "revision": 3,
    "default": True,
    "replicas": [{"id": "tiny-1", "address": "unix:/tmp/tiny-1.sock"}],
    "hold": {"timeoutSeconds": 30, "maxRequests": 1000},
}


def test_the_documented_table_parses() -> None:
    snap = parse_table({"epoch": "c0ffee12", "generation": 7, "routes": [ROUTE]})
    assert (snap.epoch, snap.generation) == ("c0ffee12", 7)
    (route,) = snap.routes
    assert (route.name, route.version, route.revision, route.default) == ("tiny", "2", 3, True)
    assert route.replicas == (ReplicaSpec("tiny-1", "unix:/tmp/tiny-1.sock"),)
    assert route.hold == Hold(30.0, 1000)


def test_optional_fields_default() -> None:
    minimal = {"name": "tiny", "version": "1", "replicas": [{"address": "unix:/a.sock"}]}
    (route,) = parse_table({"epoch": "e", "generation": 0, "routes": [minimal]}).routes
    assert (route.deployment, route.revision, route.default, route.hold) == ("tiny", None, False, None)
    assert route.replicas[0].id == "unix:/a.sock"


def _with(**changes: Any) -> dict[str, Any]:
    route = {**ROUTE, **changes}
    return {"epoch": "e", "generation": 1, "routes": [route]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be an object"),
        ({"generation": 1, "routes": []}, "epoch is missing"),
        ({"epoch": "e", "generation": True, "routes": []}, "generation must be int"),
        ({"epoch": "e", "generation": -1, "routes": []}, "must not be negative"),
        ({"epoch": "e", "generation": 1, "routes": {}}, "routes must be list"),
        (_with(version=2), r"routes\[0\].version must be str"),
        (_with(name=""), "non-empty name"),
        (_with(default="yes"), "default must be bool"),
        (_with(replicas=[{"id": "x"}]), r"replicas\[0\]\.address is missing"),
        (_with(hold={"timeoutSeconds": 0, "maxRequests": 1}), "timeoutSeconds > 0"),
        (_with(hold={"timeoutSeconds": "30", "maxRequests": 1}), "timeoutSeconds must be float"),
        ({"epoch": "e", "generation": 1, "routes": [ROUTE, ROUTE]}, "tiny:2 twice"),
        ({"epoch": "e", "generation": 1, "routes": [ROUTE, {**ROUTE, "version": "3"}]}, "more than one"),
    ],
)
def test_a_malformed_table_is_refused_naming_the_problem(doc: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_table(doc)
