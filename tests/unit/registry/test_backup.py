"""Backup and restore on SQLite: full round trip, verified blobs, refusals that change nothing."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conveyor import errors
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.archive import BackupSummary
from conveyor.registry.backup import backup
from conveyor.registry.restore import restore
from conveyor.spec import Deployment
from tests.unit.registry.conftest import SIG


def spec(replicas: int) -> tuple[dict[str, Any], str]:
    d = Deployment.model_validate(
        {"metadata": {"name": "web"}, "spec": {"model": "iris:1", "replicas": replicas}}
    )
    return d.to_dict(), d.fingerprint()


def populate(reg: Registry) -> None:
    reg.register(
        "iris", b"iris-1", signature=SIG, framework="onnx", tags={"team": "a"}, aliases=["production"]
    )
    reg.register("iris", b"iris-2", signature=SIG, framework="onnx", parent_version=1, aliases=["staging"])
    reg.register("iris", b"iris-3", signature=SIG, framework="onnx", description="tmp", metadata={"k": [1]})
    reg.delete_version("iris", 3)  # the counter stays at 3
    reg.register("wine", b"iris-1", signature=SIG, framework="sklearn", created_by="bob")  # shared blob
    deps = reg.deployments
    for replicas in (1, 3):
        deps.apply(*spec(replicas), model=f"iris:{replicas}", change_cause=f"scale to {replicas}")
    deps.rollback("web")
    deps.record_event("web", "scaled", "replicas 1 -> 3")


def snapshot(reg: Registry) -> dict[str, Any]:
    deps = reg.deployments
    return {
        "models": [m.to_dict() for m in reg.list_models()],
        "versions": [v.to_dict() for m in reg.list_models() for v in reg.list_versions(m.name)],
        "deployments": [d.to_dict() for d in deps.list()],
        "history": [r.to_dict() for d in deps.list() for r in deps.history(d.name)],
        "events": [(e.kind, e.message, e.time) for d in deps.list() for e in deps.events(d.name)],
    }


def test_round_trip_restores_everything_and_keeps_counters(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    populate(registry)
    seen: list[tuple[int, int]] = []
    made = backup(registry, tmp_path / "b.tar.gz", progress=lambda d, t: seen.append((d, t)))
    assert (made.models, made.versions, made.aliases, made.artifacts) == (2, 3, 2, 2)
    assert (made.deployments, made.revisions, made.artifact_bytes) == (1, 3, 12)
    assert seen[-1] == (12, 12)
    assert made.events >= 1
    restored = restore(fresh, tmp_path / "b.tar.gz")
    assert restored == BackupSummary(**{**made.to_dict()})
    assert snapshot(fresh) == snapshot(registry)
    v2 = fresh.resolve("iris@staging")
    assert (v2.version, v2.parent_version, fresh.artifact_bytes(v2)) == (2, 1, b"iris-2")
    assert fresh.get_version("wine", 1).created_by == "bob"
    assert fresh.register("iris", b"iris-4", signature=SIG, framework="onnx").version == 4
    assert fresh.deployments.apply(*spec(5)).revision == 4
    assert [r.model for r in fresh.deployments.history("web")] == ["iris:1", "iris:3", "iris:1", None]


def test_a_backup_of_schema_0002_restores_with_no_resolved_models(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar")
    with tarfile.open(tmp_path / "b.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        rows = json.loads(tar.extractfile("registry.json").read())  # type: ignore[union-attr]
    for r in rows["revisions"]:
        del r["model"]  # what a Conveyor before migration 0003 wrote
    old_rows = json.dumps(rows).encode()
    manifest.update(schema_revision="0002", registry_sha256=hashlib.sha256(old_rows).hexdigest())
    members: dict[str, bytes | None] = {
        "manifest.json": json.dumps(manifest).encode(),
        "registry.json": old_rows,
    }
    rewrite(tmp_path / "b.tar", tmp_path / "old.tar.gz", members)
    restore(fresh, tmp_path / "old.tar.gz")
    assert [r.model for r in fresh.deployments.history("web")] == [None, None, None]
    assert fresh.deployments.get("web").spec == registry.deployments.get("web").spec


def test_plain_tar_works_and_other_suffixes_are_refused(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar")
    assert restore(fresh, tmp_path / "b.tar").versions == 3
    with pytest.raises(errors.InvalidInput, match=r"\.tar\.gz"):
        backup(registry, tmp_path / "b.zip")


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    """Copy a backup, replacing (bytes) or dropping (None) the named members."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin:
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            if m.name in change:
                new = change[m.name]
                if new is None:
                    continue
                data = new
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))


def assert_untouched(fresh: Registry, tmp_path: Path) -> None:
    assert fresh.list_models() == [] and fresh.deployments.list() == []
    assert not any(p.is_file() for p in (tmp_path / "fresh-artifacts").rglob("*"))


@pytest.mark.parametrize("how", ["tampered", "dropped", "rows"])
def test_a_corrupt_backup_is_refused_and_nothing_changes(
    registry: Registry, fresh: Registry, tmp_path: Path, how: str
) -> None:
    populate(registry)
    good = tmp_path / "good.tar.gz"
    backup(registry, good)
    sha = registry.get_version("iris", 2).sha256
    changes: dict[str, dict[str, bytes | None]] = {
        "tampered": {f"artifacts/{sha}": b"iris-X"},
        "dropped": {f"artifacts/{sha}": None},
        "rows": {"registry.json": b'{"models": []}'},
    }
    change = changes[how]
    bad = tmp_path / "bad.tar.gz"
    rewrite(good, bad, change)
    with pytest.raises(errors.IntegrityError, match=r"corrupt|incomplete"):
        restore(fresh, bad)
    assert_untouched(fresh, tmp_path)


def test_a_truncated_backup_is_refused(registry: Registry, fresh: Registry, tmp_path: Path) -> None:
    populate(registry)
    good = tmp_path / "good.tar.gz"
    backup(registry, good)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(errors.IntegrityError, match="truncated or corrupt"):
        restore(fresh, cut)
    assert_untouched(fresh, tmp_path)


def test_not_a_backup_is_refused(fresh: Registry, tmp_path: Path) -> None:
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        tar.add(__file__, arcname="evil/../../x.py")
    with pytest.raises(errors.InvalidInput, match="not a Conveyor backup"):
        restore(fresh, other)
    with pytest.raises(errors.NotFound):
        restore(fresh, tmp_path / "missing.tar.gz")


def test_a_backup_from_an_unknown_schema_is_refused(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    backup(registry, tmp_path / "b.tar")
    with tarfile.open(tmp_path / "b.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    manifest["schema_revision"] = "9999"
    rewrite(tmp_path / "b.tar", tmp_path / "new.tar.gz", {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(errors.InvalidInput, match="schema revision '9999', unknown"):
        restore(fresh, tmp_path / "new.tar.gz")


def test_restore_into_a_used_registry_is_a_conflict(registry: Registry, tmp_path: Path) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar.gz")
    before = snapshot(registry)
    with pytest.raises(errors.Conflict, match="empty registry, but this one holds 2 models, 1 deployments"):
        restore(registry, tmp_path / "b.tar.gz")
    assert snapshot(registry) == before


def test_manifest_describes_the_archive(registry: Registry, tmp_path: Path) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert names[:2] == ["manifest.json", "registry.json"]
    assert manifest["format_version"] == 1 and manifest["schema_revision"] == "0009"
    assert {a["sha256"] for a in manifest["artifacts"]} == {n.removeprefix("artifacts/") for n in names[2:]}
    assert not list(tmp_path.glob(".b.tar.gz.tmp-*"))


@pytest.mark.postgres
def test_sqlite_to_postgresql_and_back(registry: Registry, postgres_db_url: str, tmp_path: Path) -> None:
    populate(registry)
    backup(registry, tmp_path / "lite.tar.gz")
    with Registry(postgres_db_url, LocalArtifactStore(tmp_path / "pg-artifacts")) as pg:
        restore(pg, tmp_path / "lite.tar.gz")
        assert snapshot(pg) == snapshot(registry)
        assert pg.register("iris", b"iris-4", signature=SIG, framework="onnx").version == 4  # sequences ok
        backup(pg, tmp_path / "pg.tar")
        expected = snapshot(pg)
    with Registry(f"sqlite:///{tmp_path / 'back.db'}", LocalArtifactStore(tmp_path / "back")) as back:
        restore(back, tmp_path / "pg.tar")
        assert snapshot(back) == expected
        assert back.artifact_bytes(back.resolve("iris:4")) == b"iris-4"


def resealed(tmp_path: Path, edit: Any, *, recount: bool = True) -> Path:
    """A backup whose rows were edited and whose checksums (and, with ``recount``, row counts) were
    recomputed: intact, but not necessarily valid."""
    with tarfile.open(tmp_path / "b.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        rows = json.loads(tar.extractfile("registry.json").read())  # type: ignore[union-attr]
    edit(rows, manifest)
    new_rows = json.dumps(rows).encode()
    manifest["registry_sha256"] = hashlib.sha256(new_rows).hexdigest()
    if recount:
        manifest["counts"] = {t: len(v) for t, v in rows.items()}
    out = tmp_path / "edited.tar.gz"
    members: dict[str, bytes | None] = {
        "manifest.json": json.dumps(manifest).encode(),
        "registry.json": new_rows,
    }
    rewrite(tmp_path / "b.tar", out, members)
    return out


def older(tmp_path: Path, schema: str, *tables: str) -> Path:
    """tmp_path/b.tar as a Conveyor of ``schema`` wrote it: without ``tables`` in its rows or counts."""

    def edit(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
        for table in tables:
            del rows[table], manifest["counts"][table]
        manifest["schema_revision"] = schema

    return resealed(tmp_path, edit)


def _set(table: str, field: str, value: Any) -> Any:
    def edit(rows: dict[str, Any], manifest: dict[str, Any]) -> None:
        rows[table][0][field] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_set("models", "name", "bad name/x"), "invalid model name 'bad name/x'"),
        (_set("versions", "version", -3), "invalid version -3"),
        (_set("versions", "signature", "garbage"), "has no valid signature"),
        (_set("aliases", "alias", "7"), "an alias cannot be all digits"),
        (_set("aliases", "version", 99), "points at a missing version"),
        (lambda rows, m: m["artifacts"][0].pop("sha256"), "manifest artifacts[0] needs a sha256 and a size"),
    ],
)
def test_an_intact_backup_with_invalid_contents_is_refused(
    registry: Registry, fresh: Registry, tmp_path: Path, edit: Any, problem: str
) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar")
    assert_refused_as_malformed(fresh, tmp_path, edit, problem)


def assert_refused_as_malformed(fresh: Registry, tmp_path: Path, edit: Any, problem: str) -> None:
    """Restoring tmp_path/b.tar edited by ``edit`` fails naming ``problem`` and changes nothing."""
    with pytest.raises(errors.InvalidInput, match="is malformed: .*" + re.escape(problem)):
        restore(fresh, resealed(tmp_path, edit))
    assert_untouched(fresh, tmp_path)
