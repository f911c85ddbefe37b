"""Backup and restore of the security tables: the audit chain still verifies after a restore (SQLite and
PostgreSQL), tokens keep only their hashes, signatures follow their versions, older archives still restore."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor import errors
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.registry.backup import backup
from conveyor.registry.orm import ApiToken, ModelSignature, ModelVersion
from conveyor.registry.restore import restore
from tests.unit.registry.conftest import SIG
from tests.unit.registry.test_backup import older, populate

SECRET_FREE = ("token_id", "name", "role", "salt", "hash", "revoked_by")


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Registry]:
    with Registry(
        f"sqlite:///{tmp_path / 'fresh.db'}",
        LocalArtifactStore(tmp_path / "fresh-artifacts"),
        user="restorer",
    ) as reg:
        yield reg


def with_security_rows(reg: Registry) -> None:
    """What the token and signing work store: a live and a revoked token, a signature of iris:2."""
    populate(reg)
    now = datetime.now(UTC)

    def txn(s: Any) -> None:
        common = {"role": "deployer", "salt": "5" * 32, "created_by": "admin"}
        s.add(
            ApiToken(token_id="tok1", name="ci", hash="a" * 64, expires_at=now + timedelta(days=1), **common)
        )
        s.add(
            ApiToken(token_id="tok0", name="ci", hash="b" * 64, revoked_at=now, revoked_by="admin", **common)
        )
        v2 = s.scalar(select(ModelVersion).where(ModelVersion.version == 2))
        s.add(
            ModelSignature(model_version_id=v2.id, key_id="k" * 16, signature="c2lnbmF0dXJl", signed_by="rel")
        )

    reg.database.transaction(txn, write=True)
    reg.audit.append("auth.refused", "/api/v1/apply", actor="client:127.0.0.1", details={"reason": "revoked"})


def security_snapshot(reg: Registry) -> dict[str, Any]:
    def txn(s: Any) -> dict[str, Any]:
        tokens = [
            {k: getattr(t, k) for k in (*SECRET_FREE, "expires_at", "revoked_at", "created_at", "models")}
            for t in s.scalars(select(ApiToken).order_by(ApiToken.token_id))
        ]
        signatures = [
            (g.key_id, g.signature, g.signed_at, g.signed_by, s.get(ModelVersion, g.model_version_id).version)
            for g in s.scalars(select(ModelSignature))
        ]
        return {"tokens": tokens, "signatures": signatures}

    return {**reg.database.transaction(txn), "audit": [e.to_dict() for e in reg.audit.list()]}


def test_a_restored_audit_log_is_the_same_chain_and_still_verifies(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_security_rows(registry)
    made = backup(registry, tmp_path / "b.tar.gz")
    assert (made.tokens, made.signatures, made.audit_records) == (2, 1, len(registry.audit.list()))
    assert restore(fresh, tmp_path / "b.tar.gz") == made
    assert security_snapshot(fresh) == security_snapshot(registry)
    check = fresh.audit.verify()
    assert check.intact and check.head_hash == registry.audit.verify().head_hash
    fresh.set_alias("iris", 1, "staging")  # the chain goes on from the restored head
    after = fresh.audit.verify()
    assert after.intact and after.records == check.records + 1
    assert fresh.audit.list()[-1].actor == "restorer"


def test_the_archive_holds_token_hashes_and_never_more(registry: Registry, tmp_path: Path) -> None:
    with_security_rows(registry)
    backup(registry, tmp_path / "b.tar")
    with tarfile.open(tmp_path / "b.tar") as tar:
        rows = json.loads(tar.extractfile("registry.json").read())  # type: ignore[union-attr]
    assert {t["hash"] for t in rows["tokens"]} == {"a" * 64, "b" * 64}
    assert set(rows["tokens"][0]) == {
        *SECRET_FREE,
        "models",
        "rate_limit",
        "expires_at",
        "revoked_at",
        "created_at",
        "created_by",
    }
    assert rows["signatures"][0]["model"] == "iris" and rows["signatures"][0]["version"] == 2


def test_a_backup_of_schema_0003_without_the_security_tables_still_restores(
    registry: Registry, fresh: Registry, tmp_path: Path
) -> None:
    with_security_rows(registry)
    backup(registry, tmp_path / "b.tar")
    # What a Conveyor before migration 0004 wrote: no security (nor, of course, alert) tables.
    old = older(tmp_path, "0003", "signatures", "tokens", "audit_records", "alert_rules", "alerts")
    restored = restore(fresh, old)
    assert (restored.tokens, restored.signatures, restored.audit_records, restored.versions) == (0, 0, 0, 3)
    assert fresh.audit.list() == [] and fresh.audit.verify().intact


def test_restore_refuses_a_registry_that_has_an_audit_log(
    fresh: Registry, registry: Registry, tmp_path: Path
) -> None:
    populate(registry)
    backup(registry, tmp_path / "b.tar")
    fresh.register("tmp", b"x", signature=SIG, framework="onnx")
    fresh.delete_version("tmp", 1)
    fresh.delete_model("tmp")  # no model, no deployment: only the audit log is left
    with pytest.raises(errors.Conflict, match="3 audit records"):
        restore(fresh, tmp_path / "b.tar")


@pytest.mark.postgres
def test_the_chain_survives_sqlite_to_postgresql_and_back(
    registry: Registry, postgres_db_url: str, tmp_path: Path
) -> None:
    with_security_rows(registry)
    backup(registry, tmp_path / "lite.tar.gz")
    with Registry(postgres_db_url, LocalArtifactStore(tmp_path / "pg-artifacts"), user="pg") as pg:
        restore(pg, tmp_path / "lite.tar.gz")
        assert security_snapshot(pg) == security_snapshot(registry)
        pg.register("iris", b"iris-4", signature=SIG, framework="onnx")
        check = pg.audit.verify()
        assert check.intact and check.records == len(registry.audit.list()) + 1
        backup(pg, tmp_path / "pg.tar")
        expected = security_snapshot(pg)
    with Registry(f"sqlite:///{tmp_path / 'back.db'}", LocalArtifactStore(tmp_path / "back")) as back:
        restore(back, tmp_path / "pg.tar")
        assert security_snapshot(back) == expected
        assert back.audit.verify().intact
