"""``spec.resources.gpu``, ``accelerator`` and ``fallback`` (docs/gpu.md): left out of the canonical form when
not given (stored fingerprints unchanged), one GPU per replica, the other two only beside a GPU."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidInput
from conveyor.spec import Deployment, load_documents

HEAD = "apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: t}\n"


def deployment(spec: str) -> Deployment:
    [d] = load_documents(HEAD + f"spec: {{model: 't:1', {spec}}}\n")
    assert isinstance(d, Deployment)
    return d


def test_no_gpu_fields_leave_the_fingerprint_as_it_was() -> None:
    [plain] = load_documents(HEAD + "spec: {model: 't:1'}\n")
    assert isinstance(plain, Deployment)
    assert plain.to_dict()["spec"]["resources"] == {}
    assert plain.spec.resources.device == "cpu"
    assert deployment("resources: {gpu: 1}").fingerprint() != plain.fingerprint()


@pytest.mark.parametrize(
    ("resources", "device"),
    [("{gpu: 1}", "cuda"), ("{gpu: 1, accelerator: tensorrt}", "tensorrt"), ("{gpu: 0}", "cpu")],
)
def test_the_device_a_deployment_asks_for(resources: str, device: str) -> None:
    assert deployment(f"resources: {resources}").spec.resources.device == device


def test_gpu_and_fallback_are_kept_in_the_canonical_form() -> None:
    spec = deployment("resources: {gpu: 1, fallback: cpu}").to_dict()["spec"]
    assert spec["resources"] == {"gpu": 1, "fallback": "cpu"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resources: {gpu: 2}", "one GPU; use gpu: 1 and more replicas"),
        ("resources: {fallback: cpu}", "fallback: cpu applies only with gpu: 1"),
        ("resources: {gpu: 0, accelerator: tensorrt}", "accelerator: tensorrt applies only with gpu: 1"),
        ("resources: {gpu: 1, fallback: gpu}", "fallback"),
        ("resources: {gpu: 1}, placement: inprocess", "use placement: process with gpu"),
    ],
)
def test_impossible_gpu_requests_are_refused_naming_the_field(spec: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        deployment(spec)
