"""Real processes registering versions of one model at the same moment, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.registry import LocalArtifactStore, Registry

WORKERS = 4
PER_WORKER = 5
SIG: dict[str, Any] = {"inputs": [], "outputs": []}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield request.getfixturevalue("postgres_db_url")


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


def _next_result(results: Any, procs: list[Any], timeout: float = 60.0) -> list[tuple[int, bytes]]:
    # Fail as soon as a worker dies instead of waiting out the timeout.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=0.2)  # type: ignore[no-any-return]
        except queue.Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not failed, (
                f"a registering worker failed with exit code {failed[0]} (see its traceback above)"
            )
    raise AssertionError(f"workers produced no result within {timeout}s")


def test_concurrent_registrations_get_distinct_numbers_and_lose_nothing(
    fresh_url: str, tmp_path: Path
) -> None:
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(WORKERS), ctx.Queue()
    root = tmp_path / "artifacts"
    procs = [
        ctx.Process(target=_register_many, args=(fresh_url, str(root), w, start, results))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        claimed: dict[int, bytes] = {}
        for _ in range(WORKERS):
            for version, payload in _next_result(results, procs):
                assert version not in claimed, f"version {version} handed out twice"
                claimed[version] = payload
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * WORKERS

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
