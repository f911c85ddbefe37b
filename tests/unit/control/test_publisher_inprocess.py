"""In-process replicas in the table the control plane builds: listed while gateways load them, held for
the first version, not the default during a version change until every gateway admitted them."""

from __future__ import annotations

from conveyor.control.publisher import build_routes
from conveyor.protocol.table import STARTING, Hold, InProcessLoad, ReplicaSpec

START = Hold(30.0, 1000, STARTING)


def replica(version: str) -> ReplicaSpec:
    load = InProcessLoad(f"/a/{version}.onnx", "a" * 64, "clf", version, 32, 500, 256, 30000, 1, 1 << 24)
    return ReplicaSpec(f"clf-{version}-inprocess", f"inprocess:clf/{version}/t{version}", load)


def test_a_first_inprocess_version_is_listed_held_and_default_while_gateways_load_it() -> None:
    (route,) = build_routes(
        [("clf", 1, "1", None)], [], start_hold=START, inprocess=[("clf", "1", 1, replica("1"), False)]
    )
    assert (route.version, route.default, route.replicas, route.hold) == ("1", True, (replica("1"),), START)


def test_a_new_inprocess_version_is_the_default_only_once_ready_everywhere() -> None:
    old = ("clf", "1", 1, replica("1"), True)
    loading = build_routes(
        [("clf", 2, "2", None)], [], start_hold=START, inprocess=[old, ("clf", "2", 2, replica("2"), False)]
    )
    assert [(r.version, r.default, r.replicas) for r in loading] == [
        ("1", True, (replica("1"),)),
        ("2", False, (replica("2"),)),
    ]
    ready = build_routes(
        [("clf", 2, "2", None)], [], start_hold=START, inprocess=[("clf", "2", 2, replica("2"), True)]
    )
    assert [(r.version, r.default, r.replicas) for r in ready] == [("2", True, (replica("2"),))]


def test_an_inprocess_version_replacing_replica_processes_waits_behind_them() -> None:
    processes = [("clf", "1", 1, "clf-a", "unix:/a")]
    routes = build_routes(
        [("clf", 2, "2", None)], processes, start_hold=START, inprocess=[("clf", "2", 2, replica("2"), False)]
    )
    assert [(r.version, r.default, r.hold) for r in routes] == [("1", True, None), ("2", False, START)]
