"""The routing table the control plane builds from desired deployments and ready replicas."""

from __future__ import annotations

import asyncio

from conveyor.control.publisher import RoutingState, build_routes
from conveyor.protocol.table import Hold, RouteSpec, parse_table


def test_the_current_version_is_default_and_listed_even_without_replicas() -> None:
    routes = build_routes([("clf", 2, "3", None)], [])
    assert routes == [RouteSpec("clf", "3", "clf", 2, default=True, replicas=(), hold=None)]


def test_mid_rollout_the_old_version_stays_default_until_the_new_one_has_a_ready_replica() -> None:
    old = [("clf", "1", 1, "clf-a", "unix:/a")]
    routes = build_routes([("clf", 2, "2", None)], old)
    assert [(r.version, r.default, len(r.replicas)) for r in routes] == [
        ("1", True, 1),
        ("2", False, 0),
    ]
    routes = build_routes([("clf", 2, "2", None)], [*old, ("clf", "2", 2, "clf-b", "unix:/b")])
    assert [(r.version, r.default) for r in routes] == [("1", False), ("2", True)]


def test_after_a_rollback_the_lower_version_is_the_default() -> None:
    ready = [("clf", "2", 2, "b", "unix:/b"), ("clf", "1", 3, "a", "unix:/a")]
    routes = build_routes([("clf", 3, "1", None)], ready)
    assert {r.version: r.default for r in routes} == {"1": True, "2": False}


def test_hold_is_set_only_on_the_current_version() -> None:
    hold = Hold(timeout_s=30.0, max_requests=1000)
    routes = build_routes([("clf", 2, "2", hold)], [("clf", "1", 1, "a", "unix:/a")])
    assert {r.version: r.hold for r in routes} == {"1": None, "2": hold}


def test_publish_bumps_the_generation_only_on_change_and_wakes_watchers() -> None:
    async def scenario() -> list[int]:
        state = RoutingState()
        seen: list[int] = []

        async def watch() -> None:
            async for table in state.watch():
                seen.append(table["generation"])
                if len(seen) == 3:
                    return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0)
        routes = build_routes([("clf", 1, "1", None)], [])
        assert state.publish(routes) is True
        await asyncio.sleep(0)
        assert state.publish(list(routes)) is False  # equal content: no new generation
        assert state.publish([]) is True
        await asyncio.wait_for(task, 1)
        return seen

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_acknowledged_waits_for_every_live_gateway_of_this_epoch() -> None:
    state = RoutingState()
    state.publish(build_routes([("clf", 1, "1", None)], []))
    assert state.acknowledged(1)  # no gateway: nobody to wait for
    state.report({"gateway": "a", "epoch": state.epoch, "generation": 1, "routes": []})
    state.report({"gateway": "b", "epoch": "other", "generation": 9, "routes": []})
    assert not state.acknowledged(1)
    state.report({"gateway": "b", "epoch": state.epoch, "generation": 1, "routes": []})
    assert state.acknowledged(1) and not state.acknowledged(2)


def test_load_sums_in_flight_and_held_over_gateways() -> None:
    state = RoutingState()
    assert state.load("clf", "1") is None
    for gid, (inflight, held) in {"a": (3, 0), "b": (1, 2)}.items():
        route = {"name": "clf", "version": "1", "inFlight": inflight, "held": held, "replicas": []}
        state.report({"gateway": gid, "epoch": state.epoch, "generation": 0, "routes": [route]})
    assert state.load("clf", "1") == 6
    assert state.load("clf", "2") == 0


def test_every_table_the_control_plane_builds_is_one_the_gateway_accepts() -> None:
    """What the control plane sends is what a gateway parses back, field for field."""
    hold = Hold(timeout_s=30.0, max_requests=1000)
    state = RoutingState()
    state.publish(
        build_routes(
            [("clf", 3, "2", hold), ("other", 1, "7", None)],
            [
                ("clf", "1", 2, "a", "unix:/a"),
                ("clf", "2", 3, "b", "unix:/b"),
                ("other", "7", 1, "c", "tcp:h:1"),
            ],
        )
    )
    table = parse_table(state.table())
    assert table.epoch == state.epoch and table.generation == 1
    assert table.routes == tuple(
        build_routes(
            [("clf", 3, "2", hold), ("other", 1, "7", None)],
            [
                ("clf", "1", 2, "a", "unix:/a"),
                ("clf", "2", 3, "b", "unix:/b"),
                ("other", "7", 1, "c", "tcp:h:1"),
            ],
        )
    )
    parsed = {(r.name, r.version): r for r in table.routes}
    assert parsed[("clf", "2")].default and not parsed[("clf", "1")].default
    assert parsed[("clf", "2")].hold == hold


def test_after_a_restart_no_table_is_acknowledged_until_the_live_gateways_are_known() -> None:
    state = RoutingState()
    assert state.acknowledged(state.generation)  # no gateway at all: nothing to wait for
    state.gateways_unknown(for_s=60.0)
    assert not state.acknowledged(state.generation)  # even with no report yet: gateways may not have spoken
    state.report({"gateway": "g", "epoch": state.epoch, "generation": state.generation})
    assert not state.acknowledged(state.generation)
    state.gateways_unknown(for_s=0.0)
    assert state.acknowledged(state.generation)
    state.report({"gateway": "g", "epoch": "an old epoch", "generation": 99})
    assert not state.acknowledged(state.generation)


START = Hold(timeout_s=30.0, max_requests=1000, reason="starting")


def test_a_new_version_whose_replicas_are_starting_holds_its_requests() -> None:
    routes = build_routes([("clf", 1, "1", None)], [], starting=[("clf", "1")], start_hold=START)
    assert routes == [RouteSpec("clf", "1", "clf", 1, default=True, replicas=(), hold=START)]
    doc = {"epoch": "e", "generation": 1, "routes": [routes[0].to_doc()]}
    assert parse_table(doc).routes == tuple(routes)  # the reason travels


def test_the_start_hold_goes_once_a_replica_is_ready_or_nothing_is_starting() -> None:
    ready = [("clf", "1", 1, "a", "unix:/a")]
    # A second replica still starting beside a ready one: requests go to the ready one.
    routes = build_routes([("clf", 1, "1", None)], ready, starting=[("clf", "1")], start_hold=START)
    assert [r.hold for r in routes] == [None]
    # Crashed and waiting out its restart backoff (or blocked): not starting, so nothing is held.
    assert [r.hold for r in build_routes([("clf", 1, "1", None)], [], start_hold=START)] == [None]


def test_mid_rollout_only_the_starting_version_holds_and_the_old_one_stays_default() -> None:
    old = [("clf", "1", 1, "a", "unix:/a")]
    routes = build_routes([("clf", 2, "2", None)], old, starting=[("clf", "2")], start_hold=START)
    assert [(r.version, r.default, r.hold) for r in routes] == [("1", True, None), ("2", False, START)]


def test_a_scale_to_zero_hold_is_kept_while_a_replica_starts() -> None:
    zero = Hold(timeout_s=60.0, max_requests=1000)
    routes = build_routes([("clf", 1, "1", zero)], [], starting=[("clf", "1")], start_hold=START)
    assert [r.hold for r in routes] == [zero]
