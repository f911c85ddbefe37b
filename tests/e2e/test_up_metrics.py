"""Acceptance (issue 14): under load on a 2-replica `conveyor up` deployment, across a version change, the
gateway's conveyor_requests_total in the control plane's aggregated /metrics equals, per version and code,
what the client sent and got answered (the version from each answer's model_version)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.processes import ProcessGroup
from tests.fixtures.stack import UpStack, versions_stack

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
SPEC = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: clf
spec:
  model: clf:{v}
  replicas: 2
"""
GOOD = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)
BAD = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
CLIENTS = 4
LOAD_DEADLINE_S = 120.0


@pytest.fixture
def stack(cli_env: dict[str, str], tmp_path: Path, processes: ProcessGroup) -> Iterator[UpStack]:
    yield from versions_stack(processes, cli_env, tmp_path)


class Client(threading.Thread):
    """Sends until stopped, every 7th request a bad input; counts what it got answered."""

    def __init__(self, url: str, headers: dict[str, str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.stop = url, headers, stop
        self.ok: Counter[str] = Counter()  # model_version -> 200s
        self.codes: Counter[int] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_S
        try:
            with httpx.Client(timeout=30, headers=self.headers) as client:
                n = 0
                while not self.stop.is_set() and time.monotonic() < deadline:
                    n += 1
                    r = client.post(self.url, content=BAD if n % 7 == 0 else GOOD)
                    self.codes[r.status_code] += 1
                    if r.status_code == 200:
                        self.ok[r.json()["model_version"]] += 1
        except BaseException as exc:  # seen by the test, not lost in the thread
            self.error = exc


def gateway_counts(text: str) -> Counter[tuple[str, str]]:
    """(version, code) -> conveyor_requests_total of the gateway for model clf."""
    found: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            ls = s.labels
            if s.name == "conveyor_requests_total" and ls["component"] == "gateway" and ls["model"] == "clf":
                found[(ls["version"], ls["code"])] += int(s.value)
    return found


def test_gateway_counts_equal_what_the_client_saw_per_version_across_a_version_change(
    stack: UpStack, tmp_path: Path
) -> None:
    for v in (1, 2):
        (tmp_path / f"v{v}.yaml").write_text(SPEC.format(v=v))
    stack.start("-f", str(tmp_path / "v1.yaml"))
    stack.wait(lambda: stack.serving("clf", "1", 2), what="2 replicas of version 1")
    stop = threading.Event()
    clients = [
        Client(f"{stack.gateway_url}/v2/models/clf/infer", stack.headers, stop) for _ in range(CLIENTS)
    ]
    for c in clients:
        c.start()
    try:
        stack.wait(lambda: sum(sum(c.ok.values()) for c in clients) > 100, what="load on version 1")
        stack.cli("apply", "-f", str(tmp_path / "v2.yaml"), "--wait", "--timeout", "90")
        assert stack.serving("clf", "2", 2)
        before = sum(c.ok["2"] for c in clients)
        stack.wait(lambda: sum(c.ok["2"] for c in clients) > before + 100, what="load on version 2")
    finally:
        stop.set()
        for c in clients:
            c.join(60)
    assert all(c.error is None for c in clients), [c.error for c in clients]
    sent_ok = sum((c.ok for c in clients), Counter[str]())
    sent_codes = sum((c.codes for c in clients), Counter[int]())
    assert set(sent_codes) == {200, 400}, sent_codes
    assert sent_ok["1"] > 0 and sent_ok["2"] > 0

    scraped = httpx.get(f"{stack.api_url}/metrics", headers=stack.headers, timeout=30)
    assert scraped.status_code == 200, scraped.text
    counted = gateway_counts(scraped.text)
    assert {v: counted[(v, "200")] for v in ("1", "2")} == {v: sent_ok[v] for v in ("1", "2")}
    bad = {version: n for (version, code), n in counted.items() if code == "400"}
    assert sum(bad.values()) == sent_codes[400] and set(bad) <= {"1", "2"}
    assert set(code for _, code in counted) == {"200", "400"}

    assert httpx.get(f"{stack.api_url}/metrics", timeout=30).status_code == 401
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    ready = [
        s
        for s in families["conveyor_replicas"].samples
        if s.labels["state"] == "ready" and s.labels["component"] == "control"
    ]
    assert [(s.labels["version"], s.value) for s in ready] == [("2", 2.0)]
    instances = {s.labels["instance"] for s in families["process_cpu_seconds"].samples}
    ids = {r["id"] for r in stack.replicas("clf")}
    assert {"control", "gateway"} | ids <= instances
