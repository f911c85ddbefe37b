"""requireSignedModels over a real SQLite registry: apply refuses an unsigned version, one signed only by an
untrusted key and a tampered signature, naming the deployment and the version; the control plane starts no
replica of such a version; one signed by a trusted key deploys. The field stays out of old fingerprints."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.control.desired import DesiredLoader
from conveyor.control.management_ops import apply_documents
from conveyor.control.signed_models import SignedModels
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.security import signing
from conveyor.settings import Settings
from conveyor.spec import Deployment

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def doc(model: str, required: bool | None = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": model}
    if required is not None:
        spec["requireSignedModels"] = required
    return {"apiVersion": "conveyor.dev/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("m", b"version one", signature=SIG, framework="onnx")
        yield reg


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    signing.create_keypair(tmp_path / "home" / "keys", "mine")  # trusted: the default trusted directory
    signing.create_keypair(tmp_path / "elsewhere", "theirs")
    return Settings(home=tmp_path / "home")


def sign(registry: Registry, directory: Path, key: str, ref: str = "m:1") -> None:
    registry.sign_version(registry.resolve(ref), signing.load_private_key(directory, key))


def apply(registry: Registry, settings: Settings, document: dict[str, Any]) -> list[dict[str, Any]]:
    policy = SignedModels.from_settings(settings)
    return apply_documents(registry, [document], dry_run=False, user="t", policy=policy)


def test_an_unsigned_version_is_refused_at_apply(registry: Registry, settings: Settings) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        apply(registry, settings, doc("m:1"))
    assert str(info.value) == (
        "deployment 'web': model m:1 is not signed (requireSignedModels; sign it: conveyor models sign m:1)"
    )
    assert registry.deployments.list() == []


def test_a_version_signed_by_an_untrusted_key_is_refused(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    sign(registry, tmp_path / "elsewhere", "theirs")
    with pytest.raises(errors.InvalidInput, match="model m:1 is signed only by untrusted key"):
        apply(registry, settings, doc("m:1"))


def test_a_tampered_signature_is_refused(registry: Registry, settings: Settings) -> None:
    sign(registry, settings.keys_dir, "mine")
    [stored] = registry.signatures.of_version("m", 1)
    raw = bytearray(base64.b64decode(stored.signature))
    raw[5] ^= 0x40
    registry.signatures.add("m", 1, signing.Signature(stored.key_id, base64.b64encode(bytes(raw)).decode()))
    with pytest.raises(errors.InvalidInput, match=r"the signature by key mine \(.*\) does not verify"):
        apply(registry, settings, doc("m:1"))


def test_a_version_signed_by_a_trusted_key_deploys(registry: Registry, settings: Settings) -> None:
    sign(registry, settings.keys_dir, "mine")
    [result] = apply(registry, settings, doc("m:1"))
    assert result["changed"] and result["model"] == "m:1"
    assert DesiredLoader(registry, settings).load()["web"].version == "1"


def test_the_setting_requires_signatures_for_a_spec_that_does_not_ask(
    registry: Registry, settings: Settings
) -> None:
    apply(registry, settings, doc("m:1", required=None))  # not required: unsigned is fine
    forced = settings.model_copy(update={"require_signed_models": True})
    with pytest.raises(errors.InvalidInput, match="model m:1 is not signed"):
        apply(registry, forced, doc("m:1", required=False))


def test_no_replica_starts_for_an_unsigned_version_applied_before_the_policy(
    registry: Registry, settings: Settings
) -> None:
    apply(registry, settings, doc("m:1", required=None))
    forced = settings.model_copy(update={"require_signed_models": True})
    loader = DesiredLoader(registry, forced)
    assert "web" not in loader.load()
    assert loader.problems["web"].startswith("model m:1 is not signed")
    sign(registry, settings.keys_dir, "mine")
    assert loader.load()["web"].version == "1" and not loader.problems


def test_the_field_is_left_out_of_the_canonical_form_when_false() -> None:
    plain = Deployment.model_validate(doc("m:1", required=None))
    explicit = Deployment.model_validate(doc("m:1", required=False))
    assert "requireSignedModels" not in explicit.to_dict()["spec"]
    assert explicit.fingerprint() == plain.fingerprint()
    required = Deployment.model_validate(doc("m:1"))
    assert required.to_dict()["spec"]["requireSignedModels"] is True
    assert required.fingerprint() != plain.fingerprint()
