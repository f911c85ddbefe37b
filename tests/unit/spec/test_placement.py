"""``spec.placement``: auto by default and left out of the canonical form (stored fingerprints unchanged);
inprocess is one copy per gateway, so replicas other than 1 and autoscaling are refused naming the field."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidInput
from conveyor.spec import Deployment, load_documents

HEAD = "apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: t}\n"


def deployment(spec: str) -> Deployment:
    [d] = load_documents(HEAD + f"spec: {{model: 't:1', {spec}}}\n")
    assert isinstance(d, Deployment)
    return d


def test_placement_defaults_to_auto_and_auto_leaves_the_fingerprint_as_it_was() -> None:
    [plain] = load_documents(HEAD + "spec: {model: 't:1'}\n")
    assert isinstance(plain, Deployment) and plain.spec.placement == "auto"
    explicit = deployment("placement: auto")
    assert "placement" not in plain.to_dict()["spec"] and "placement" not in explicit.to_dict()["spec"]
    assert explicit.fingerprint() == plain.fingerprint()


@pytest.mark.parametrize("placement", ["inprocess", "process"])
def test_a_chosen_placement_is_kept_in_the_canonical_form(placement: str) -> None:
    d = deployment(f"placement: {placement}")
    assert d.to_dict()["spec"]["placement"] == placement
    assert d.fingerprint() != deployment("placement: auto").fingerprint()


def test_process_placement_scales_as_before() -> None:
    assert deployment("placement: process, replicas: 3").spec.replicas == 3
    assert deployment("placement: process, autoscaling: {maxReplicas: 4}").spec.autoscaling is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("placement: inprocess, replicas: 2", "spec.placement: inprocess runs one copy .* not replicas: 2"),
        ("placement: inprocess, replicas: 0", "spec.placement: .* not replicas: 0"),
        ("placement: inprocess, autoscaling: {maxReplicas: 4}", "spec.placement: .* cannot autoscale"),
        ("placement: sidecar", "spec.placement: "),
        ("placement: 1", "spec.placement: "),
    ],
)
def test_a_placement_that_cannot_work_is_refused_naming_the_field(spec: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        deployment(spec)
    assert len(str(caught.value).splitlines()) == 1, str(caught.value)
