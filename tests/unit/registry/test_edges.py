"""Edge nodes in the registry (migration 0009): register (again), heartbeats, list, forget; what is refused
names the field; a backup carries the nodes and a restore brings them back field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import errors
from conveyor.registry import Registry
from conveyor.registry.backup import backup
from conveyor.registry.edges import Heartbeat
from conveyor.registry.restore import restore
from tests.unit.registry.test_backup import populate


def test_a_node_registers_reports_and_registers_again_with_new_labels(registry: Registry) -> None:
    first = registry.edges.register("shop-1", "clf", {"site": "shop"}, address="http://10.0.0.5:8080")
    assert (first.health, first.version, first.requests) == ("starting", None, 0)
    registry.edges.heartbeat("shop-1", Heartbeat("2", "serving", 40, 1, None, ("1", "2")))
    again = registry.edges.register("shop-1", "clf", {"site": "lab"}, agent_version="9.9")
    assert again.labels == {"site": "lab"} and again.version == "2" and again.cached == ["1", "2"]
    assert again.registered_at == first.registered_at and again.last_seen >= first.last_seen
    assert again.to_dict()["agentVersion"] == "9.9" and "lastSeen" in again.to_dict()
    actions = [e.action for e in registry.audit.list(None, 100) if e.object == "shop-1"]
    assert actions == ["edge.register", "edge.register"]  # heartbeats are not audited


def test_a_heartbeat_of_an_unknown_node_is_not_found_and_a_forgotten_one_is_gone(registry: Registry) -> None:
    with pytest.raises(errors.NotFound, match="not registered"):
        registry.edges.heartbeat("ghost", Heartbeat(None, "empty"))
    registry.edges.register("shop-1", "clf", {})
    registry.edges.register("shop-2", "other", {})
    assert [e.name for e in registry.edges.list()] == ["shop-1", "shop-2"]
    assert [e.name for e in registry.edges.list("other")] == ["shop-2"]
    registry.edges.delete("shop-1", by="token:ops")
    assert [e.name for e in registry.edges.list()] == ["shop-2"]
    with pytest.raises(errors.NotFound):
        registry.edges.get("shop-1")


@pytest.mark.parametrize(
    ("name", "deployment", "labels", "message"),
    [
        ("Shop_1", "clf", {}, "invalid edge node name 'Shop_1'"),
        ("shop-1", "", {}, "invalid deployment name ''"),
        ("shop-1", "clf", {"site": "a b"}, "invalid label value 'a b' for 'site'"),
        ("shop-1", "clf", {"-x": "a"}, "invalid label key '-x'"),
        ("shop-1", "clf", {f"k{i}": "v" for i in range(33)}, "at most 32 labels"),
    ],
)
def test_a_registration_that_is_not_valid_is_refused_naming_what(
    registry: Registry, name: str, deployment: str, labels: dict[str, str], message: str
) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        registry.edges.register(name, deployment, labels)


@pytest.mark.parametrize(
    ("beat", "message"),
    [
        (Heartbeat("2", "sleeping"), "invalid health 'sleeping'"),
        (Heartbeat("two", "serving"), "invalid version 'two'"),
        (Heartbeat("2", "serving", -1), "must not be negative"),
    ],
)
def test_a_heartbeat_that_is_not_valid_is_refused(registry: Registry, beat: Heartbeat, message: str) -> None:
    registry.edges.register("shop-1", "clf", {})
    with pytest.raises(errors.InvalidInput, match=message):
        registry.edges.heartbeat("shop-1", beat)


def test_a_backup_carries_the_edge_nodes_and_a_restore_brings_them_back(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    populate(registry)
    registry.edges.register("shop-1", "web", {"site": "shop"}, address="http://10.0.0.5:8080")
    registry.edges.heartbeat("shop-1", Heartbeat("1", "degraded", 7, 2, "refused web:2: untrusted", ("1",)))
    registry.edges.register("shop-2", "web", {})
    backup(registry, tmp_path / "b.tar")
    restore(fresh, tmp_path / "b.tar")
    assert fresh.edges.list() == registry.edges.list()
