"""spec.cache: the Deployment field (left out of the canonical form when absent) and the replica options the
desired state gives for it (in the template only when set)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conveyor.control.desired import DesiredLoader
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from conveyor.spec.resources import Deployment

SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"model": "m:1", **spec},
    }


def test_an_absent_cache_is_left_out_of_the_canonical_form() -> None:
    plain = Deployment.model_validate(doc())
    assert "cache" not in plain.to_dict()["spec"]
    cached = Deployment.model_validate(doc(cache={"maxEntries": 5, "ttl": "30s"}))
    assert cached.to_dict()["spec"]["cache"] == {
        "enabled": True,
        "maxEntries": 5,
        "maxBytes": 64 * 1024 * 1024,
        "ttl": "30s",
    }
    assert cached.fingerprint() != plain.fingerprint()
    assert Deployment.model_validate(cached.to_dict()) == cached


@pytest.mark.parametrize(
    ("cache", "where", "words"),
    [
        ({"ttl": "0s"}, "cache.ttl", "ttl must be > 0"),
        ({"ttl": "soon"}, "cache.ttl", "invalid duration"),
        ({"maxEntries": 0}, "cache.maxEntries", "greater than or equal to 1"),
        ({"maxBytes": 10}, "cache.maxBytes", "greater than or equal to 1024"),
        ({"size": 10}, "cache.size", "Extra inputs"),
    ],
)
def test_a_bad_cache_field_is_named(cache: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as info:
        Deployment.model_validate(doc(cache=cache))
    assert where in str(info.value)


def test_inprocess_placement_refuses_a_cache() -> None:
    with pytest.raises(ValidationError, match="placement: process"):
        Deployment.model_validate(doc(placement="inprocess", cache={}))
    Deployment.model_validate(doc(placement="inprocess", cache={"enabled": False}))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a"), user="t") as reg:
        reg.register("m", b"version one", signature=SIG, framework="onnx")
        yield reg


def _desired(registry: Registry, tmp_path: Path, spec: dict[str, Any]) -> Any:
    fingerprint = hashlib.sha256(repr(spec).encode()).hexdigest()
    registry.deployments.apply(spec, fingerprint, model="m:1")
    return DesiredLoader(registry, Settings(home=tmp_path)).load()["web"]


def test_replicas_get_the_cache_options_and_a_new_template_only_when_it_is_on(
    registry: Registry, tmp_path: Path
) -> None:
    plain = _desired(registry, tmp_path, doc())
    assert not any(k.startswith("cache") for k in plain.options)
    off = _desired(registry, tmp_path, doc(cache={"enabled": False}))
    assert off.template == plain.template
    on = _desired(registry, tmp_path, doc(cache={"maxEntries": 5, "maxBytes": 4096, "ttl": "1m"}))
    assert on.options["cache_max_entries"] == 5
    assert on.options["cache_max_bytes"] == 4096
    assert on.options["cache_ttl"] == 60.0
    assert on.template != plain.template
