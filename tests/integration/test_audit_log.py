"""The audit log on SQLite and PostgreSQL: real changes write it, concurrent writers keep one chain, and
tampering with raw SQL is found by verify, which names the first bad seq."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conveyor import errors
from conveyor.control import management_ops as ops
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.spec import Deployment
from tests.fixtures.racing import race

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
WORKERS = 3
PER_WORKER = 4


@pytest.fixture
def registry(fresh_url: str, tmp_path: Path) -> Any:
    with Registry(fresh_url, LocalArtifactStore(tmp_path / "artifacts"), user="alice") as reg:
        yield reg


def _spec(replicas: int, model: str = "iris:1") -> tuple[dict[str, Any], str]:
    d = Deployment.model_validate(
        {"metadata": {"name": "web"}, "spec": {"model": model, "replicas": replicas}}
    )
    return d.to_dict(), d.fingerprint()


def _sql(registry: Registry, *statements: str) -> None:
    with registry.database.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _populate(registry: Registry) -> None:
    registry.register("iris", b"v1", signature=SIG, framework="onnx", aliases=["production"])
    registry.register("iris", b"v2", signature=SIG, framework="onnx", created_by="bob")
    registry.set_alias("iris", 2, "production", user="carol")


def test_every_change_is_recorded_with_its_actor_and_details(registry: Registry) -> None:
    _populate(registry)
    registry.set_tags("iris", 2, {"team": "ml"})
    registry.remove_alias("iris", "production")
    deps = registry.deployments
    deps.apply(*_spec(1), model="iris:1", created_by="dave")
    ops.scale(registry, "web", 3, user="erin")
    deps.rollback("web", created_by="frank")
    deps.delete("web", user="gina")
    registry.delete_version("iris", 1)
    registry.delete_version("iris", 2, user="hal")
    registry.delete_model("iris")

    log = registry.audit.list()
    assert [(e.seq, e.action, e.object, e.actor) for e in log] == [
        (1, "model.register", "iris:1", "alice"),
        (2, "model.register", "iris:2", "bob"),
        (3, "alias.set", "iris@production", "carol"),
        (4, "version.tags", "iris:2", "alice"),
        (5, "alias.remove", "iris@production", "alice"),
        (6, "deployment.apply", "web", "dave"),
        (7, "deployment.scale", "web", "erin"),
        (8, "deployment.rollback", "web", "frank"),
        (9, "deployment.delete", "web", "gina"),
        (10, "version.delete", "iris:1", "alice"),
        (11, "version.delete", "iris:2", "hal"),
        (12, "model.delete", "iris", "alice"),
    ]
    details = {e.seq: e.details for e in log}
    assert details[1]["aliases"] == ["production"] and len(details[1]["sha256"]) == 64
    assert details[3] == {"version": 2, "previous_version": 1}
    assert details[4] == {"tags": {"team": "ml"}, "previous_tags": {}}
    assert details[7]["replicas"] == 3 and details[7]["revision"] == 2
    assert details[8] == {"from_revision": 2, "to_revision": 1, "revision": 3, "model": "iris:1"}
    assert details[9] == {"revision": 3, "model": "iris:1"}
    check = registry.audit.verify()
    assert (check.intact, check.records, check.head_seq, check.head_hash) == (True, 12, 12, log[-1].hash)


def test_a_refused_change_and_an_unchanged_apply_record_nothing(registry: Registry) -> None:
    _populate(registry)
    registry.deployments.apply(*_spec(1), model="iris:2")
    before = len(registry.audit.list())
    with pytest.raises(errors.Conflict):
        registry.delete_version("iris", 2)  # aliased and deployed
    assert not registry.deployments.apply(*_spec(1), model="iris:2").changed
    assert len(registry.audit.list()) == before


def test_list_since_and_limit_keep_the_newest(registry: Registry) -> None:
    for i in range(5):
        registry.audit.append("login.refused", f"token/t{i}", details={"reason": "revoked"})
    assert [e.seq for e in registry.audit.list(limit=2)] == [4, 5]
    third = registry.audit.list()[2]
    assert [e.seq for e in registry.audit.list(since=third.time)] == [3, 4, 5]
    assert registry.audit.list()[0].actor == "alice"


def _append_many(url: str, root: str, worker: int, start: Any, results: Any) -> None:
    start.wait(timeout=60)  # every worker opens the fresh database (and migrates it) at once
    with Registry(url, LocalArtifactStore(Path(root)), user=f"w{worker}") as registry:
        for i in range(PER_WORKER):
            if i % 2:
                registry.audit.append("login.refused", f"token/w{worker}-{i}")
            else:
                registry.register(f"m{worker}", f"{worker}-{i}".encode(), signature=SIG, framework="onnx")
    results.put(worker)


def test_concurrent_writers_in_several_processes_keep_one_unbroken_chain(
    fresh_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    race(_append_many, (fresh_url, str(root)), WORKERS)
    with Registry(fresh_url, LocalArtifactStore(root)) as registry:
        check = registry.audit.verify()
        assert check.problem is None
        assert check.records == WORKERS * PER_WORKER
        assert [e.seq for e in registry.audit.list()] == list(range(1, WORKERS * PER_WORKER + 1))


@pytest.mark.parametrize(
    ("statements", "seq", "kind"),
    [
        (["UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"], 2, "edited"),
        (["UPDATE audit_log SET object = 'iris:9' WHERE seq = 3"], 3, "edited"),
        (["DELETE FROM audit_log WHERE seq = 2"], 2, "removed"),
        (["DELETE FROM audit_log WHERE seq = 1"], 1, "removed"),
        (
            [
                "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = -2",
            ],
            2,
            "reordered",
        ),
    ],
    ids=["edited-actor", "edited-object", "deleted", "deleted-first", "swapped"],
)
def test_tampering_with_raw_sql_is_found_at_the_first_bad_seq(
    registry: Registry, statements: list[str], seq: int, kind: str
) -> None:
    _populate(registry)
    assert registry.audit.verify().intact
    _sql(registry, *statements)
    problem = registry.audit.verify().problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (seq, kind), str(problem)


def test_the_chain_continues_across_registries_on_the_same_database(fresh_url: str, tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    with Registry(fresh_url, store, user="a") as first:
        first.register("iris", b"v1", signature=SIG, framework="onnx")
    with Registry(fresh_url, store, user="b") as second:
        second.set_alias("iris", 1, "staging")
        log = second.audit.list()
        assert [(e.seq, e.actor) for e in log] == [(1, "a"), (2, "b")]
        assert log[1].prev_hash == log[0].hash
        assert second.audit.verify().intact


@pytest.mark.parametrize(
    "assignment", ["details = 'not json'", "details = '[1, 2]'", "time = 'yesterday'"], ids=str
)
def test_a_record_edited_into_unreadable_values_on_sqlite_is_named_not_a_crash(
    tmp_path: Path, assignment: str
) -> None:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="u") as registry:
        _populate(registry)
        _sql(registry, f"UPDATE audit_log SET {assignment} WHERE seq = 2")
        assert len(registry.audit.list()) == 3
        problem = registry.audit.verify().problem
        assert problem is not None
        assert (problem.seq, problem.kind) == (2, "edited")
