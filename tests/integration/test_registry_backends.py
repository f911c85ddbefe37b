"""The registry behaves the same on SQLite and PostgreSQL; database failures become Conveyor errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.registry import LocalArtifactStore, Registry
from tests.fixtures.processes import free_port

SIG: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}], "outputs": []}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_db_url")
    with Registry(url, LocalArtifactStore(tmp_path / "artifacts"), user="it") as reg:
        yield reg


def test_lifecycle(registry: Registry) -> None:
    v1 = registry.register(
        "iris", b"v1", signature=SIG, framework="onnx", tags={"k": "v"}, aliases=["production"]
    )
    v2 = registry.register(
        "iris", b"v2", signature=SIG, framework="onnx", parent_version=1, aliases=["staging"]
    )
    assert (v1.version, v2.version, v2.parent_version) == (1, 2, 1)
    assert registry.resolve("iris").version == 1
    assert registry.resolve("iris@staging").version == 2
    assert registry.set_alias("iris", 2, "production").aliases == ["production", "staging"]
    assert registry.resolve("iris").version == 2
    assert registry.get_version("iris", 1).aliases == []
    assert registry.set_tags("iris", 1, {"k": "w"}).tags == {"k": "w"}
    assert registry.get_version("iris", 1).signature == SIG
    assert registry.get_version("iris", 1).created_at == v1.created_at
    with pytest.raises(errors.Conflict, match="production, staging"):
        registry.delete_version("iris", 2)
    registry.delete_version("iris", 1)
    assert [v.version for v in registry.list_versions("iris")] == [2]
    (m,) = registry.list_models()
    assert (m.latest_version, m.version_count, m.aliases) == (2, 1, {"production": 2, "staging": 2})
    assert registry.register("iris", b"v3", signature=SIG, framework="onnx").version == 3
    assert registry.artifact_bytes(registry.resolve("iris:3")) == b"v3"


def test_reopening_an_up_to_date_database_is_a_no_op(registry: Registry, tmp_path: Path) -> None:
    registry.register("iris", b"v1", signature=SIG, framework="onnx")
    url = registry._db.url.render_as_string(hide_password=False)
    with Registry(url, registry.store) as again:
        assert [v.version for v in again.list_versions("iris")] == [1]


def test_an_unreachable_postgres_is_unavailable_and_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://alice:s3cret@127.0.0.1:{free_port()}/registry"
    with pytest.raises(errors.Unavailable) as info:
        Registry(url, LocalArtifactStore(tmp_path))
    message = str(info.value)
    assert message.startswith(
        "cannot reach the registry database at postgresql+psycopg://alice:***@127.0.0.1:"
    )
    assert "s3cret" not in message
