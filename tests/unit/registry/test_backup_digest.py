"""A backup reads every blob and verifies it: a tampered one fails the backup, which leaves no archive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor import errors
from conveyor.registry import Registry
from conveyor.registry.backup import backup
from tests.unit.registry.conftest import SIG


def test_a_tampered_blob_fails_the_backup_and_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("m", b"registered bytes", signature=SIG, framework="onnx")
    blob = registry.artifact_location(v)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"swapped bytes!!!")  # same size: only the digest tells
    with pytest.raises(errors.IntegrityError, match=f"artifact {v.sha256} is corrupt"):
        backup(registry, tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("b.tar")] == []
