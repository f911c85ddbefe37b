"""Parsing the control plane's routing table: what a good one becomes; every malformed one refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from conveyor.errors import InvalidInput
from conveyor.protocol.table import Hold, InProcessLoad, ReplicaSpec, TableSnapshot, parse_table
from conveyor.security.tokens import TokenRecord

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


# -- in-process replicas (placement inprocess) --------------------------------------------------------

LOAD: dict[str, Any] = {
    "modelFile": "/home/conveyor/artifacts/ab/abcd.onnx",
    "sha256": "a" * 64,
    "model": "tiny",
    "version": "2",
    "maxBatchSize": 32,
    "maxQueueDelayMicroseconds": 500,
    "maxQueueSize": 256,
    "requestTimeoutMilliseconds": 30000,
    "intraOpThreads": 1,
    "maxElements": 16777216,
}
INPROCESS_REPLICA: dict[str, Any] = {
    "id": "tiny-ab12cd-inprocess",
    "address": "inprocess:tiny/2/ab12cd",
    "inprocess": LOAD,
}


def test_an_inprocess_replica_carries_its_load_description_there_and_back() -> None:
    doc = _with(replicas=[INPROCESS_REPLICA])
    (route,) = parse_table(doc).routes
    (replica,) = route.replicas
    assert replica.inprocess == InProcessLoad(
        model_file=LOAD["modelFile"],
        sha256="a" * 64,
        model="tiny",
        version="2",
        max_batch_size=32,
        max_queue_delay_us=500,
        max_queue_size=256,
        request_timeout_ms=30000,
        intra_op_threads=1,
        max_elements=16777216,
    )
    assert replica.to_doc() == INPROCESS_REPLICA
    # A process replica's entry is as it was: no inprocess key.
    assert ReplicaSpec("a", "unix:/a.sock").to_doc() == {"id": "a", "address": "unix:/a.sock"}


def _replica(**changes: Any) -> dict[str, Any]:
    return _with(replicas=[{**INPROCESS_REPLICA, **changes}])


def _load(**changes: Any) -> dict[str, Any]:
    return _replica(inprocess={**LOAD, **changes})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_replica(inprocess=None), "needs an inprocess load description .* without"),
        (_with(replicas=[{"address": "unix:/a.sock", "inprocess": LOAD}]), "exactly when .* with one"),
        (_replica(inprocess="tiny.onnx"), r"replicas\[0\]\.inprocess must be an object"),
        (_replica(inprocess={**LOAD, "sha256": None}), r"inprocess\.sha256 must be str, got None"),
        (_load(sha256="ABC"), r"inprocess\.sha256: invalid artifact digest"),
        (_load(modelFile=""), r"inprocess\.modelFile must not be empty"),
        (_load(version=2), r"inprocess\.version must be str"),
        (_load(maxBatchSize=0), r"inprocess\.maxBatchSize must be >= 1"),
        (_load(maxQueueDelayMicroseconds=-1), r"inprocess\.maxQueueDelayMicroseconds must be >= 0"),
        (_load(intraOpThreads=True), r"inprocess\.intraOpThreads must be int"),
        (_load(maxElements=1.5), r"inprocess\.maxElements must be int"),
    ],
)
def test_a_malformed_inprocess_replica_refuses_the_table(doc: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_table(doc)


def test_public_routes_and_tokens_go_there_and_back_and_no_tokens_means_none_asked() -> None:
    token = TokenRecord("0123456789abcdef", "web", "predictor", "aa" * 16, "b" * 64, "iris*", 100.0, 1e9)
    doc = {"epoch": "e", "generation": 1, "routes": [{**ROUTE, "public": True}], "tokens": [token.to_doc()]}
    snap = parse_table(doc)
    assert snap.routes[0].public and snap.tokens == (token,)
    assert parse_table(TableSnapshot(snap.epoch, snap.generation, snap.routes, snap.tokens).to_doc()) == snap
    assert parse_table({"epoch": "e", "generation": 1, "routes": [ROUTE]}).tokens is None
    private = dataclasses.replace(snap.routes[0], public=False)
    assert "public" not in TableSnapshot("e", 1, (private,)).to_doc()["routes"][0]  # left out when false


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("all", "tokens must be a list"),
        ([{"id": "x"}], "tokens[0]"),
        ([{"id": "x", "name": "n", "role": "root", "salt": "s", "hash": "h"}], "unknown role 'root'"),
    ],
)
def test_malformed_tokens_refuse_the_table(tokens: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_table({"epoch": "e", "generation": 1, "routes": [ROUTE], "tokens": tokens})
