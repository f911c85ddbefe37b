"""requireValidated over a real SQLite registry: apply refuses (409) a version never validated or whose newest
validation failed, naming the deployment, the version and the failed gates; a passing run lets it deploy;
`rollout start` refuses an unvalidated candidate, even with --force; the field stays out of old
fingerprints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.control.management_ops import apply_documents
from conveyor.control.rollout_ops import start_by_command
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.spec import Deployment

SIG: dict[str, Any] = {"inputs": [], "outputs": []}
FAILED = [{"gate": "regression", "passed": True}, {"gate": "performance", "passed": False}]


def doc(model: str, required: bool | None = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": model}
    if required is not None:
        spec["requireValidated"] = required
    return {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("m", b"version one", signature=SIG, framework="onnx")
        reg.register("m", b"version two", signature=SIG, framework="onnx")
        yield reg


def apply(registry: Registry, document: dict[str, Any]) -> list[dict[str, Any]]:
    return apply_documents(registry, [document], dry_run=False, user="t")


def test_a_version_never_validated_is_refused_at_apply(registry: Registry) -> None:
    with pytest.raises(errors.Conflict) as info:
        apply(registry, doc("m:1"))
    assert str(info.value) == (
        "deployment 'web': model m:1 was never validated (requireValidated; validate it: "
        "conveyor validate m:1)"
    )
    assert registry.deployments.list() == []


def test_a_failed_validation_is_refused_naming_the_gates_and_a_pass_deploys(registry: Registry) -> None:
    registry.validations.record("m", 1, passed=False, gates=FAILED)
    with pytest.raises(errors.Conflict, match=r"model m:1 failed its latest validation \(performance, "):
        apply(registry, doc("m:1"))
    registry.validations.record("m", 1, passed=True, gates=FAILED[:1])
    [result] = apply(registry, doc("m:1"))
    assert (result["model"], result["revision"]) == ("m:1", 1)


def test_the_newest_run_is_the_verdict(registry: Registry) -> None:
    registry.validations.record("m", 1, passed=True, gates=[])
    registry.validations.record("m", 1, passed=False, gates=FAILED)
    with pytest.raises(errors.Conflict, match="failed its latest validation"):
        apply(registry, doc("m:1"))


def test_the_tag_alone_does_not_count(registry: Registry) -> None:
    registry.set_tags("m", 1, {"validated": "true"})  # anyone may edit a tag; only a run is a verdict
    with pytest.raises(errors.Conflict, match="never validated"):
        apply(registry, doc("m:1"))


def test_without_the_field_nothing_is_checked(registry: Registry) -> None:
    [result] = apply(registry, doc("m:1", required=None))
    assert result["model"] == "m:1"


def test_rollout_start_refuses_an_unvalidated_candidate_even_forced(registry: Registry) -> None:
    registry.validations.record("m", 1, passed=True, gates=[])
    apply(registry, doc("m:1"))
    for force in (False, True):
        with pytest.raises(errors.Conflict, match="deployment web: model m:2 was never validated"):
            start_by_command(registry, "web", "m:2", strategy=None, force=force, user="t")
    registry.validations.record("m", 2, passed=True, gates=[])
    revision, rollout = start_by_command(registry, "web", "m:2", strategy=None, force=False, user="t")
    assert (revision, rollout.candidate_model) == (2, "m:2")


def test_false_stays_out_of_the_canonical_form_and_the_fingerprint() -> None:
    off = Deployment.model_validate(doc("m:1", required=False))
    absent = Deployment.model_validate(doc("m:1", required=None))
    on = Deployment.model_validate(doc("m:1"))
    assert "requireValidated" not in off.to_dict()["spec"]
    assert off.fingerprint() == absent.fingerprint() != on.fingerprint()
    assert on.to_dict()["spec"]["requireValidated"] is True
