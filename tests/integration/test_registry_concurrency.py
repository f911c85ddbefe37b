"""Real processes registering versions of one model at the same moment, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.registry import LocalArtifactStore, Registry
from tests.fixtures.racing import race

WORKERS = 4
PER_WORKER = 5
SIG: dict[str, Any] = {"inputs": [], "outputs": []}


def _register_many(url: str, root: str, worker: int, start: Any, results: Any) -> None:
    start.wait(timeout=60)  # every worker opens the fresh database (and migrates it) at once
    out: list[tuple[int, bytes]] = []
    with Registry(url, LocalArtifactStore(Path(root))) as registry:
        for i in range(PER_WORKER):
            payload = f"worker {worker} model {i}".encode()
            if i == 0:
                payload = b"identical bytes from every worker"
            v = registry.register("racy", payload, signature=SIG, framework="onnx", created_by=f"w{worker}")
            out.append((v.version, payload))
    results.put(out)


def test_concurrent_registrations_get_distinct_numbers_and_lose_nothing(
    fresh_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    claimed: dict[int, bytes] = {}
    for batch in race(_register_many, (fresh_url, str(root)), WORKERS):
        for version, payload in batch:
            assert version not in claimed, f"version {version} handed out twice"
            claimed[version] = payload

    total = WORKERS * PER_WORKER
    assert sorted(claimed) == list(range(1, total + 1))
    with Registry(fresh_url, LocalArtifactStore(root)) as registry:
        versions = registry.list_versions("racy")
        assert [v.version for v in versions] == list(range(1, total + 1))
        for v in versions:
            assert registry.artifact_bytes(v) == claimed[v.version]
        (model,) = registry.list_models()
        assert (model.latest_version, model.version_count) == (total, total)
        assert registry.register("racy", b"after", signature=SIG, framework="onnx").version == total + 1
