from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from conveyor import errors
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.db import MIGRATIONS_DIR, head_revision
from conveyor.settings import Settings
from tests.unit.registry.conftest import SIG


def reg(registry: Registry, name: str = "iris", data: bytes = b"model", **kw: object) -> int:
    return registry.register(name, data, signature=SIG, framework="onnx", **kw).version  # type: ignore[arg-type]


def test_versions_are_numbered_from_one_per_model(registry: Registry) -> None:
    assert [reg(registry, "a", b"1"), reg(registry, "a", b"2"), reg(registry, "b", b"3")] == [1, 2, 1]
    assert [v.version for v in registry.list_versions("a")] == [1, 2]


def test_register_records_everything_and_round_trips(registry: Registry, tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(b"onnx bytes")
    v = registry.register(
        "iris",
        src,
        signature=SIG,
        framework="sklearn",
        description="first",
        tags={"team": "ml"},
        aliases=["staging"],
        metadata={"parity": {"max_abs_diff": 1e-7}},
    )
    assert v.sha256 == hashlib.sha256(b"onnx bytes").hexdigest()
    assert v.size_bytes == 10
    assert v.created_at.tzinfo is UTC
    assert v.created_by == "tester"
    assert registry.get_version("iris", 1) == v
    assert registry.artifact_bytes(v) == b"onnx bytes"
    assert registry.artifact_path(v).read_bytes() == b"onnx bytes"


def test_to_dict_is_json_with_every_field(registry: Registry) -> None:
    reg(registry, data=b"parent")
    v = registry.register(
        "iris",
        b"child",
        signature=SIG,
        framework="onnx",
        parent_version=1,
        aliases=["b", "a"],
        created_by="ci",
    )
    d = json.loads(json.dumps(v.to_dict()))
    assert d["name"] == "iris"
    assert d["version"] == 2
    assert d["parent_version"] == 1
    assert d["sha256"] == hashlib.sha256(b"child").hexdigest()
    assert d["size_bytes"] == 5
    assert d["signature"] == SIG
    assert d["aliases"] == ["a", "b"]
    assert d["framework"] == "onnx"
    assert d["created_by"] == "ci"
    assert d["created_at"].endswith("+00:00")
    assert set(d) >= {"description", "tags", "metadata"}
    m = json.loads(json.dumps(registry.list_models()[0].to_dict()))
    assert m == {
        "name": "iris",
        "description": None,
        "latest_version": 2,
        "version_count": 2,
        "aliases": {"a": 2, "b": 2},
        "created_at": m["created_at"],
        "created_by": "tester",
    }


def test_resolve_name_prefers_production_then_latest(registry: Registry) -> None:
    reg(registry, data=b"1")
    reg(registry, data=b"2")
    assert registry.resolve("iris").version == 2
    registry.set_alias("iris", 1, "production")
    assert registry.resolve("iris").version == 1
    assert registry.resolve("iris:2").version == 2
    assert registry.resolve("iris@production").version == 1


def test_resolve_unknowns_are_not_found(registry: Registry) -> None:
    with pytest.raises(errors.NotFound, match="model 'ghost' not found"):
        registry.resolve("ghost")
    reg(registry)
    with pytest.raises(errors.NotFound, match="version iris:7 not found"):
        registry.resolve("iris:7")
    with pytest.raises(errors.NotFound, match="alias iris@staging not found"):
        registry.resolve("iris@staging")


def test_set_alias_moves_it_atomically(registry: Registry) -> None:
    reg(registry, data=b"1")
    reg(registry, data=b"2")
    assert registry.set_alias("iris", 1, "production").aliases == ["production"]
    moved = registry.set_alias("iris", 2, "production")
    assert moved.version == 2 and moved.aliases == ["production"]
    assert registry.get_version("iris", 1).aliases == []
    assert registry.list_models()[0].aliases == {"production": 2}


def test_register_with_an_existing_alias_moves_it_to_the_new_version(registry: Registry) -> None:
    reg(registry, data=b"1", aliases=["production"])
    reg(registry, data=b"2", aliases=["production"])
    assert registry.resolve("iris@production").version == 2
    assert registry.get_version("iris", 1).aliases == []


def test_alias_to_a_missing_version_is_not_found(registry: Registry) -> None:
    reg(registry)
    with pytest.raises(errors.NotFound, match="iris:9"):
        registry.set_alias("iris", 9, "production")


def test_remove_alias(registry: Registry) -> None:
    reg(registry, aliases=["staging"])
    registry.remove_alias("iris", "staging")
    assert registry.get_version("iris", 1).aliases == []
    with pytest.raises(errors.NotFound, match="alias iris@staging not found"):
        registry.remove_alias("iris", "staging")


def test_delete_is_refused_while_aliased_naming_the_aliases(registry: Registry) -> None:
    reg(registry, aliases=["production", "canary"])
    with pytest.raises(errors.Conflict, match="alias\\(es\\) canary, production point at it"):
        registry.delete_version("iris", 1)
    registry.remove_alias("iris", "production")
    registry.remove_alias("iris", "canary")
    registry.delete_version("iris", 1)
    assert registry.list_versions("iris") == []


def test_delete_keeps_a_blob_shared_with_another_version(
    registry: Registry, store: LocalArtifactStore
) -> None:
    a = registry.register("a", b"same bytes", signature=SIG, framework="onnx")
    registry.register("b", b"same bytes", signature=SIG, framework="onnx")
    registry.delete_version("a", 1)
    assert store.exists(a.sha256)
    registry.delete_version("b", 1)
    assert not store.exists(a.sha256)


def test_version_numbers_are_never_reused_after_deleting_the_latest(registry: Registry) -> None:
    reg(registry, data=b"1")
    reg(registry, data=b"2")
    registry.delete_version("iris", 2)
    assert reg(registry, data=b"3") == 3
    registry.delete_version("iris", 1)
    registry.delete_version("iris", 3)
    (model,) = registry.list_models()
    assert (model.latest_version, model.version_count) == (None, 0)
    with pytest.raises(errors.NotFound, match="has no versions"):
        registry.resolve("iris")


def test_delete_model_only_when_empty(registry: Registry) -> None:
    reg(registry)
    with pytest.raises(errors.Conflict, match="still has 1 version"):
        registry.delete_model("iris")
    registry.delete_version("iris", 1)
    registry.delete_model("iris")
    assert registry.list_models() == []


def test_tags_are_mutable_content_is_not(registry: Registry) -> None:
    v1 = registry.register("iris", b"m", signature=SIG, framework="onnx", tags={"a": "1"})
    v2 = registry.set_tags("iris", 1, {"b": "2"})
    assert v2.tags == {"b": "2"}
    assert (v2.sha256, v2.signature, v2.created_at) == (v1.sha256, v1.signature, v1.created_at)
    assert registry.get_version("iris", 1).tags == {"b": "2"}
    with pytest.raises(errors.InvalidInput, match="invalid tag"):
        registry.set_tags("iris", 1, {"k": 3})  # type: ignore[dict-item]


def test_lineage_parent_must_exist(registry: Registry) -> None:
    reg(registry, data=b"fp32")
    child = registry.register("iris", b"int8", signature=SIG, framework="onnx", parent_version=1)
    assert child.parent_version == 1
    with pytest.raises(errors.NotFound, match="parent version iris:5 not found"):
        registry.register("iris", b"x", signature=SIG, framework="onnx", parent_version=5)
    assert [v.version for v in registry.list_versions("iris")] == [1, 2]


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "a:b", "a@b", "ü", "x" * 129])
def test_bad_model_names_are_invalid_input(registry: Registry, name: str) -> None:
    with pytest.raises(errors.InvalidInput, match="invalid model name"):
        registry.register(name, b"m", signature=SIG, framework="onnx")


@pytest.mark.parametrize("alias", ["", "42", "a b", "@x"])
def test_bad_aliases_are_invalid_input(registry: Registry, alias: str) -> None:
    reg(registry)
    with pytest.raises(errors.InvalidInput, match="invalid alias"):
        registry.set_alias("iris", 1, alias)


def test_bad_arguments_are_invalid_input(registry: Registry) -> None:
    with pytest.raises(errors.InvalidInput, match="framework"):
        registry.register("iris", b"m", signature=SIG, framework="")
    with pytest.raises(errors.InvalidInput, match="signature must be a JSON object"):
        registry.register("iris", b"m", signature=[], framework="onnx")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput, match="metadata is not JSON-serializable"):
        registry.register("iris", b"m", signature=SIG, framework="onnx", metadata={"x": object()})
    with pytest.raises(errors.InvalidInput, match="artifact must be bytes or a file path"):
        registry.register("iris", 42, signature=SIG, framework="onnx")  # type: ignore[arg-type]
    assert registry.list_models() == []


def test_a_corrupt_artifact_is_never_returned(registry: Registry, store: LocalArtifactStore) -> None:
    v = registry.register("iris", b"good", signature=SIG, framework="onnx")
    blob = store.root / v.sha256[:2] / v.sha256[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"evil")
    with pytest.raises(errors.IntegrityError, match=f"artifact {v.sha256} is corrupt"):
        registry.artifact_bytes(v)
    with pytest.raises(errors.IntegrityError):
        registry.artifact_path(v)


def test_reopening_keeps_data_and_uses_wal(tmp_path: Path, store: LocalArtifactStore) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Registry(url, store) as r:
        r.register("iris", b"m", signature=SIG, framework="onnx")
    with Registry(url, store) as r:
        assert [v.version for v in r.list_versions("iris")] == [1]
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with sqlite3.connect(tmp_path / "r.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head


def test_from_settings_creates_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", user="alice")
    with Registry.from_settings(settings) as r:
        v = r.register("iris", b"m", signature=SIG, framework="onnx")
    assert v.created_by == "alice"
    assert (tmp_path / "home" / "registry.db").is_file()
    assert (tmp_path / "home" / "artifacts" / v.sha256[:2] / v.sha256[2:]).is_file()


def test_an_unopenable_database_is_unavailable(tmp_path: Path, store: LocalArtifactStore) -> None:
    with pytest.raises(errors.Unavailable, match="cannot reach the registry database at sqlite:///"):
        Registry(f"sqlite:///{tmp_path / 'missing-dir' / 'r.db'}", store)


def test_unsupported_urls_are_invalid_input(store: LocalArtifactStore) -> None:
    with pytest.raises(errors.InvalidInput, match="registry database URL"):
        Registry("nonsense://", store)


def test_the_head_known_from_file_names_is_alembics() -> None:
    assert head_revision() == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_a_database_at_head_opens_without_loading_alembic(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from conveyor.registry import LocalArtifactStore, Registry\n"
        f"url, root = 'sqlite:///{tmp_path / 'r.db'}', {str(tmp_path / 'a')!r}\n"
        "Registry(url, LocalArtifactStore(root)).close()\n"
        "print('alembic' in sys.modules, end=' ')\n"
        "for m in [m for m in sys.modules if m.startswith('alembic')]:\n"
        "    del sys.modules[m]\n"
        "Registry(url, LocalArtifactStore(root)).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr  # the first open migrates, the next only reads
