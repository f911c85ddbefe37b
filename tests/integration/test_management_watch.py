"""The routing watch over a real uvicorn server: NDJSON tables, keep-alive lines, and a clean stop when the
client goes away."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from conveyor.control import management
from conveyor.registry import LocalArtifactStore, Registry
from conveyor.settings import Settings
from tests.fixtures.control_runtime import FakeRuntime
from tests.fixtures.processes import free_port


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeRuntime, str]]:
    monkeypatch.setattr(management, "KEEPALIVE_S", 0.2)
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", LocalArtifactStore(tmp_path / "a")) as registry:
        runtime = FakeRuntime(registry)
        token, _ = registry.tokens.create("watcher", "gateway")  # what a `conveyor gateway` follows with
        app = management.create_api(registry, runtime, Settings(home=tmp_path))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        try:
            yield f"http://127.0.0.1:{port}", runtime, token
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            assert not thread.is_alive()


def test_watch_streams_each_table_and_keep_alives_then_stops_with_the_client(
    served: tuple[str, FakeRuntime, str],
) -> None:
    url, runtime, token = served
    headers = {"authorization": f"Bearer {token}"}
    with (
        httpx.Client(timeout=5, headers=headers) as client,
        client.stream("GET", f"{url}/api/v1/routing/watch") as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/x-ndjson"
        lines = resp.iter_lines()
        assert orjson.loads(next(lines)) == {"epoch": "feedbeef", "generation": 1, "routes": []}
        runtime.table = {"epoch": "feedbeef", "generation": 2, "routes": [{"name": "tiny"}]}
        assert orjson.loads(next(lines))["generation"] == 2
        assert next(lines) == ""  # nothing changed for KEEPALIVE_S
        assert runtime.watchers == 1
    deadline = time.monotonic() + 5
    while runtime.watchers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.watchers == 0, "the watch kept running after the client left"
    assert httpx.get(f"{url}/api/v1/routing", headers=headers).json()["generation"] == 2
