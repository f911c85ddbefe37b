"""Batching model files for runtime tests, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import batching_models as bm


@pytest.fixture(scope="session")
def batching_files(models_dir: Path) -> dict[str, Path]:
    return {
        "pool": bm.build_pool(models_dir / "pool.onnx"),
        "fixed": bm.build_fixed(models_dir / "fixed.onnx"),
        "gather": bm.build_gather(models_dir / "gather.onnx"),
        "slow": bm.build_slow(models_dir / "slow.onnx", k=8),
    }
