"""`conveyor models show`: the lineage of a version and the report of the optimization that made it."""

from __future__ import annotations

from pathlib import Path

from conveyor.cli.models import _lineage, _lineage_line, _optimized_line
from conveyor.registry import LocalArtifactStore, Registry

SIG = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []}


def test_lineage_walks_the_parents_and_says_when_one_was_deleted(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a")) as registry:
        registry.register("m", b"one", signature=SIG, framework="onnx", metadata={"source": "a file"})
        registry.register("m", b"two", signature=SIG, framework="onnx", parent_version=1)
        registry.register("m", b"three", signature=SIG, framework="onnx", parent_version=2)
        v3 = registry.get_version("m", 3)
        assert _lineage(registry, v3) == [{"ref": "m:2", "source": None}, {"ref": "m:1", "source": "a file"}]
        registry.delete_version("m", 2)
        lineage = _lineage(registry, v3)
    assert lineage == [{"ref": "m:2", "deleted": True}]
    assert _lineage_line({"name": "m", "version": 3, "lineage": lineage}) == "m:3 ← m:2 (deleted)"
    assert _lineage_line({"name": "m", "version": 1, "lineage": []}) is None


def test_the_optimized_line_gives_method_size_drift_quality_and_latency() -> None:
    report = {
        "parent": "mlp:1",
        "method": "static",
        "graph_opt": "basic",
        "data": {"rows": 300, "source": "test.npy"},
        "bounds": {"max_drift": 0.1},
        "before": {"size_bytes": 79635, "quality": {"accuracy": 0.84}, "timing": {"1": {"p50_ms": 0.031}}},
        "after": {
            "size_bytes": 26100,
            "drift": {"max_abs_diff": 0.0851},
            "quality": {"accuracy": 0.83},
            "timing": {"1": {"p50_ms": 0.036}},
        },
    }
    assert _optimized_line(report) == (
        "static + graph optimization (basic) of mlp:1; 77.8 KiB → 25.5 KiB; max |drift| 0.0851 (bound 0.1) "
        "on 300 rows of test.npy; accuracy 0.84 → 0.83; p50 batch 1 0.031 → 0.036 ms"
    )
