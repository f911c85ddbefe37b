"""Two control planes (`conveyor server`, two homes: two machines) on one PostgreSQL registry with the
artifacts on S3: one leads and acts, the other follows (refuses writes, starts nothing); the leader is
killed and the follower takes over within the lease and reconciles the deployment."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok
from tests.fixtures.stack import kill_recorded_replicas

LEASE_S = 3.0
SPEC = {
    "apiVersion": "conveyor.dev/v1",
    "kind": "Deployment",
    "metadata": {"name": "iris"},
    "spec": {"model": "iris:1", "replicas": 1},
}


def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


def _leading(health: dict[str, Any]) -> dict[str, Any] | None:
    election: dict[str, Any] = health["election"]
    return election if election["leader"] else None


def _leader_gauge(text: str, holder: str) -> float:
    (value,) = re.findall(rf'^conveyor_leader{{[^}}]*holder="{re.escape(holder)}"[^}}]*}} (\S+)$', text, re.M)
    return float(value)


@pytest.mark.slow
@pytest.mark.postgres
def test_the_follower_takes_over_when_the_leader_dies_and_never_acts_before(
    cli_env: dict[str, str],
    cli: CliRunner,
    postgres_db_url: str,
    s3_env: dict[str, str],
    s3_bucket: str,
    iris_files: dict[str, Path],
    processes: ProcessGroup,
    tmp_path: Path,
) -> None:
    cli_env.update(s3_env)
    cli_env["CONVEYOR_DATABASE_URL"] = postgres_db_url
    cli_env["CONVEYOR_ARTIFACTS_URL"] = f"s3://{s3_bucket}"
    cli_env["CONVEYOR_LEADER_LEASE_S"] = str(LEASE_S)
    cli("models", "register", "iris", str(iris_files["skops"]))
    homes = {"a": Path(cli_env["CONVEYOR_HOME"]), "b": tmp_path / "home-b"}
    urls = {name: f"http://127.0.0.1:{free_port()}" for name in homes}
    procs: dict[str, Any] = {}
    try:
        for name in ("a", "b"):
            if name == "b":  # the admin token lives in the shared registry: the second home uses the same
                homes["b"].mkdir()
                shutil.copy(homes["a"] / "admin.token", homes["b"] / "admin.token")
            env = {**cli_env, "CONVEYOR_HOME": str(homes[name])}
            port = urls[name].rsplit(":", 1)[1]
            procs[name] = processes.start([conveyor_exe(), "server", "--api-port", port], env=env)
            wait_http_ok(f"{urls[name]}/api/v1/health", procs[name], timeout=90)
        token = (homes["a"] / "admin.token").read_text().strip()
        headers = {"authorization": f"Bearer {token}"}

        def get(name: str, path: str) -> Any:
            r = httpx.get(f"{urls[name]}{path}", headers=headers, timeout=10)
            r.raise_for_status()
            return r.json() if path.startswith("/api/") else r.text

        a, b = get("a", "/api/v1/health")["election"], get("b", "/api/v1/health")["election"]
        assert a["leader"] and not b["leader"], (a, b)
        assert b["current"] == {"holder": a["holder"], "address": urls["a"], "term": a["current"]["term"]}

        # The follower refuses writes, naming the leader; the leader takes them and acts.
        refused = httpx.post(
            f"{urls['b']}/api/v1/apply", json={"documents": [SPEC]}, headers=headers, timeout=10
        )
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert refused.json()["leader"] == {"holder": a["holder"], "address": urls["a"]}
        assert "follower" in refused.json()["error"]
        applied = httpx.post(
            f"{urls['a']}/api/v1/apply", json={"documents": [SPEC]}, headers=headers, timeout=30
        )
        assert applied.status_code == 200, applied.text

        def ready(name: str) -> bool:
            rows = get(name, "/api/v1/replicas")["replicas"]
            return len(rows) == 1 and rows[0]["state"] == "ready"

        _until(lambda: ready("a"), 90, "the leader's replica ready")
        time.sleep(LEASE_S)  # a follower that acted would have started one by now
        assert get("b", "/api/v1/replicas")["replicas"] == []
        assert _leader_gauge(get("a", "/metrics"), a["holder"]) == 1.0
        assert _leader_gauge(get("b", "/metrics"), b["holder"]) == 0.0

        procs["a"].send_signal(signal.SIGKILL)  # no release: the follower waits out the lease
        killed = time.monotonic()
        procs["a"].wait(timeout=10)
        took_over = _until(lambda: _leading(get("b", "/api/v1/health")), 30, "the follower leading")
        took = time.monotonic() - killed
        print(f"takeover {took:.2f}s after the leader was killed (lease {LEASE_S}s)")
        assert took < LEASE_S * 3, took  # the lease (less what had run of it) + one poll, on a loaded box
        assert took_over["current"]["term"] == a["current"]["term"] + 1
        _until(lambda: ready("b"), 90, "the new leader's replica ready")
        accepted = httpx.post(
            f"{urls['b']}/api/v1/apply", json={"documents": [SPEC]}, headers=headers, timeout=30
        )
        assert accepted.status_code == 200, accepted.text
    finally:
        for proc in procs.values():
            processes.stop(proc)
        for home in homes.values():
            kill_recorded_replicas(home)
