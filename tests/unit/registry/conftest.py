"""A real registry on SQLite in tmp_path, with a local artifact store beside it; an empty one for restores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.registry import LocalArtifactStore, Registry

SIG: dict[str, Any] = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def registry(tmp_path: Path, store: LocalArtifactStore) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}", store, user="tester") as reg:
        yield reg


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Registry]:
    """An empty registry beside ``registry``, to restore a backup into."""
    with Registry(
        f"sqlite:///{tmp_path / 'fresh.db'}", LocalArtifactStore(tmp_path / "fresh-artifacts")
    ) as reg:
        yield reg
