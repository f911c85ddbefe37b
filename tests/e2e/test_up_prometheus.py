"""A real Prometheus (Debian's package) scrapes `conveyor up`'s control plane with the admin token and sees
the requests a client sent through the gateway, per version, with the component and instance labels."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fixtures.processes import ProcessGroup, free_port, wait_http_ok
from tests.fixtures.stack import UpStack, versions_stack

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="needs Debian's prometheus (make system-deps)"
    ),
]
SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:1
  replicas: 2
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)
REQUESTS = 25
QUERY = 'sum(conveyor_requests_total{component="gateway",model="clf",version="1",code="200"})'


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    yield from versions_stack(processes, cli_env, tmp_path, versions=1)


def test_prometheus_scraping_the_control_plane_sees_the_gateways_requests(
    stack: UpStack, tmp_path: Path, processes: ProcessGroup
) -> None:
    (tmp_path / "clf.yaml").write_text(SPEC)
    stack.start("-f", str(tmp_path / "clf.yaml"))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 ready replicas")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: conveyor\n"
        f"    authorization:\n      type: Bearer\n      credentials_file: {stack.home / 'admin.token'}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{stack.api_port}']\n"
    )
    prom = processes.start(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/-/ready", prom)
        with httpx.Client(timeout=30, headers=stack.headers) as client:
            for _ in range(REQUESTS):
                assert (
                    client.post(f"{stack.gateway_url}/v2/models/clf/infer", content=BODY).status_code == 200
                )
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline:
            answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": QUERY}, timeout=10)
            result = answer.json()["data"]["result"]
            seen = float(result[0]["value"][1]) if result else None
            if seen == REQUESTS:
                break
            time.sleep(0.5)
        assert seen == REQUESTS
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10).json()["data"]
        assert [t["health"] for t in targets["activeTargets"]] == ["up"]
        per_instance = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query",
            params={"query": 'count by (component) (process_resident_memory_bytes{job="conveyor"})'},
            timeout=10,
        ).json()["data"]["result"]
        assert {r["metric"]["component"]: r["value"][1] for r in per_instance} == {
            "control": "1",
            "gateway": "1",
            "replica": "2",
        }
    finally:
        processes.stop(prom)
