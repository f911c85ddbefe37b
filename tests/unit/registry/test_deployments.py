"""DeploymentStore on SQLite: idempotent apply, revisions, rollback, events, errors."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import errors
from conveyor.registry import DeploymentStore, Registry
from conveyor.spec import Deployment


def spec(name: str = "web", replicas: int = 1, model: str = "iris:1") -> tuple[dict[str, Any], str]:
    d = Deployment.model_validate(
        {"metadata": {"name": name}, "spec": {"model": model, "replicas": replicas}}
    )
    return d.to_dict(), d.fingerprint()


@pytest.fixture
def deployments(registry: Registry) -> DeploymentStore:
    return registry.deployments


def test_first_apply_creates_revision_1(deployments: DeploymentStore) -> None:
    body, fp = spec()
    result = deployments.apply(body, fp)
    assert result.to_dict() == {"name": "web", "revision": 1, "changed": True}
    info = deployments.get("web")
    assert (info.revision, info.spec, info.fingerprint, info.created_by) == (1, body, fp, "tester")
    assert info.created_at.tzinfo is not None
    assert info.to_dict()["updated_at"] == info.updated_at.isoformat()


def test_applying_the_same_spec_twice_changes_nothing(deployments: DeploymentStore) -> None:
    body, fp = spec()
    deployments.apply(body, fp)
    again = deployments.apply(body, fp, created_by="someone-else")
    assert (again.revision, again.changed) == (1, False)
    assert [r.revision for r in deployments.history("web")] == [1]


def test_a_changed_spec_makes_a_new_revision_and_history_is_oldest_first(
    deployments: DeploymentStore,
) -> None:
    for replicas in (1, 3, 5):
        deployments.apply(*spec(replicas=replicas), change_cause=f"scale to {replicas}", created_by="ci")
    history = deployments.history("web")
    assert [(r.revision, r.change_cause, r.spec["spec"]["replicas"]) for r in history] == [
        (1, "scale to 1", 1),
        (2, "scale to 3", 3),
        (3, "scale to 5", 5),
    ]
    assert all(r.created_by == "ci" for r in history)
    assert deployments.revision("web", 2) == history[1]
    assert history[1].to_dict()["created_at"] == history[1].created_at.isoformat()
    assert deployments.get("web").revision == 3


def test_rollback_defaults_to_the_revision_before_current(deployments: DeploymentStore) -> None:
    deployments.apply(*spec(replicas=1))
    deployments.apply(*spec(replicas=2))
    result = deployments.rollback("web", created_by="oncall")
    assert (result.revision, result.changed) == (3, True)
    rev = deployments.revision("web", 3)
    assert (rev.change_cause, rev.created_by, rev.spec) == ("rollback to 1", "oncall", spec(replicas=1)[0])
    # Revisions 1 and 2 are untouched; a second undo goes back to revision 2's spec.
    assert deployments.rollback("web").revision == 4
    assert deployments.get("web").spec == spec(replicas=2)[0]
    assert deployments.revision("web", 4).change_cause == "rollback to 2"


def test_rollback_to_an_explicit_older_revision(deployments: DeploymentStore) -> None:
    for replicas in (1, 2, 3):
        deployments.apply(*spec(replicas=replicas))
    result = deployments.rollback("web", 1)
    assert (result.revision, result.changed) == (4, True)
    assert deployments.get("web").fingerprint == spec(replicas=1)[1]
    assert deployments.revision("web", 4).change_cause == "rollback to 1"
    # Applying revision 1's spec again now is a no-op: it is current.
    assert deployments.apply(*spec(replicas=1)).changed is False


def test_rollback_to_a_revision_equal_to_current_is_a_no_op(deployments: DeploymentStore) -> None:
    deployments.apply(*spec(replicas=1))
    deployments.apply(*spec(replicas=2))
    deployments.apply(*spec(replicas=1))
    result = deployments.rollback("web", 1)
    assert (result.revision, result.changed) == (3, False)
    assert len(deployments.history("web")) == 3


def test_apply_records_the_resolved_model_and_a_moved_alias_makes_a_new_revision(
    deployments: DeploymentStore,
) -> None:
    body, fp = spec(model="iris@production")
    assert deployments.apply(body, fp, model="iris:1").revision == 1
    assert deployments.apply(body, fp, model="iris:1").changed is False
    moved = deployments.apply(body, fp, model="iris:2")  # same spec, the alias now points at 2
    assert (moved.revision, moved.changed) == (2, True)
    assert deployments.get("web").model == "iris:2"
    assert deployments.get("web").to_dict()["model"] == "iris:2"
    assert [r.model for r in deployments.history("web")] == ["iris:1", "iris:2"]


def test_rollback_returns_to_exactly_the_model_that_revision_ran(deployments: DeploymentStore) -> None:
    body, fp = spec(model="iris@production")
    deployments.apply(body, fp, model="iris:1")
    deployments.apply(body, fp, model="iris:2")
    result = deployments.rollback("web")
    assert (result.revision, result.changed) == (3, True)
    assert deployments.revision("web", 3).model == "iris:1"
    assert deployments.rollback("web", 3).changed is False  # same spec and model as current


def test_rollback_without_an_earlier_revision_conflicts(deployments: DeploymentStore) -> None:
    deployments.apply(*spec())
    with pytest.raises(errors.Conflict, match="no earlier revision"):
        deployments.rollback("web")


def test_list_shows_each_deployment_current_spec_by_name(deployments: DeploymentStore) -> None:
    deployments.apply(*spec("zeta"))
    deployments.apply(*spec("alpha", replicas=1))
    deployments.apply(*spec("alpha", replicas=4))
    listed = deployments.list()
    assert [(d.name, d.revision, d.spec["spec"]["replicas"]) for d in listed] == [
        ("alpha", 2, 4),
        ("zeta", 1, 1),
    ]


def test_events_record_revisions_and_keep_the_most_recent(deployments: DeploymentStore) -> None:
    deployments.apply(*spec())
    for i in range(5):
        deployments.record_event("web", "ScaledUp", f"to {i}")
    recent = deployments.events("web", limit=3)
    assert [(e.kind, e.message) for e in recent] == [
        ("ScaledUp", "to 2"),
        ("ScaledUp", "to 3"),
        ("ScaledUp", "to 4"),
    ]
    first = deployments.events("web")[0]
    assert (first.kind, first.message) == ("RevisionCreated", "revision 1: apply")
    assert first.to_dict()["time"] == first.time.isoformat()


def test_delete_removes_everything_and_the_name_starts_again(deployments: DeploymentStore) -> None:
    deployments.apply(*spec(replicas=1))
    deployments.apply(*spec(replicas=2))
    deployments.record_event("web", "Ready", "2/2 replicas")
    deployments.delete("web")
    with pytest.raises(errors.NotFound):
        deployments.get("web")
    assert deployments.list() == []
    assert deployments.apply(*spec(replicas=7)).revision == 1
    assert [e.kind for e in deployments.events("web")] == ["RevisionCreated"]


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.get("nope"),
        lambda d: d.history("nope"),
        lambda d: d.revision("nope", 1),
        lambda d: d.revision("web", 9),
        lambda d: d.rollback("nope"),
        lambda d: d.rollback("web", 9),
        lambda d: d.delete("nope"),
        lambda d: d.record_event("nope", "Ready", "x"),
        lambda d: d.events("nope"),
    ],
)
def test_unknown_deployments_and_revisions_are_not_found(deployments: DeploymentStore, call: Any) -> None:
    deployments.apply(*spec())
    with pytest.raises(errors.NotFound):
        call(deployments)


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.get("bad name"),
        lambda d: d.get(""),
        lambda d: d.revision("web", 0),
        lambda d: d.revision("web", True),
        lambda d: d.rollback("web", -1),
        lambda d: d.events("web", limit=0),
        lambda d: d.record_event("web", "", "x"),
        lambda d: d.apply({"metadata": {"name": "x y"}}, "0" * 64),
        lambda d: d.apply({"spec": {}}, "0" * 64),
        lambda d: d.apply(["not", "a", "dict"], "0" * 64),
        lambda d: d.apply({"metadata": {"name": "w"}}, "not-hex"),
        lambda d: d.apply({"metadata": {"name": "w"}, "x": float("nan")}, "0" * 64),
        lambda d: d.apply({"metadata": {"name": "w"}}, "0" * 64, change_cause=""),
        lambda d: d.apply({"metadata": {"name": "w"}}, "0" * 64, model=""),
        lambda d: d.apply({"metadata": {"name": "w"}}, "0" * 64, model="m:" + "1" * 300),
    ],
)
def test_bad_arguments_are_invalid_input(deployments: DeploymentStore, call: Any) -> None:
    deployments.apply(*spec())
    with pytest.raises(errors.InvalidInput):
        call(deployments)


def test_apply_all_stores_every_document_or_none(
    deployments: DeploymentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = spec("a"), spec("b")
    results = deployments.apply_all([(*b, "iris:1"), (*a, "iris:1")])
    assert [(r.name, r.revision, r.changed) for r in results] == [("b", 1, True), ("a", 1, True)]
    assert [r.changed for r in deployments.apply_all([(*a, "iris:1"), (*b, "iris:1")])] == [False, False]

    import conveyor.registry.deployments as module

    real, calls = module._add_revision, []

    def fail_on_second(*args: Any) -> int:
        calls.append(args)
        if len(calls) == 2:
            raise errors.ConveyorError("the database went away")
        return real(*args)

    monkeypatch.setattr(module, "_add_revision", fail_on_second)
    with pytest.raises(errors.ConveyorError, match="went away"):
        deployments.apply_all([(*spec("a", replicas=2), "iris:1"), (*spec("b", replicas=2), "iris:1")])
    assert [d.revision for d in deployments.list()] == [1, 1]  # a's revision 2 was rolled back with b's
    with pytest.raises(errors.InvalidInput, match="repeat"):
        deployments.apply_all([(*a, "iris:1"), (*a, "iris:1")])
