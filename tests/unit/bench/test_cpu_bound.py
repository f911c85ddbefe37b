"""The benchmark's machine bound: cores / (compute + load generator) per inference, from measured rows."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

# bench modules import each other flat; appended, so nothing of the suite is shadowed
sys.path.append(str(Path(__file__).resolve().parents[3] / "bench"))

import cpu


def _rows(client_us: list[float]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"model": "mlp", "server": "ORT in-process", "concurrency": "b1", "rps": 30_000.0, "status": "ok"},
        {
            "model": "mlp",
            "server": "ORT in-process",
            "concurrency": "b32",
            "rps": 140_000.0,
            "cpu_us": 14.0,
            "status": "ok",
        },
    ]
    for i, us in enumerate(client_us):
        server = "lean" if i == 0 else f"conveyor-{i}"
        rows.append(
            {
                "model": "mlp",
                "server": server,
                "concurrency": 32,
                "rps": 5_000.0 + i,
                "status": "ok",
                "client_cpu_us": us,
            }
        )
        rows.append(
            {
                "model": "mlp",
                "server": server,
                "concurrency": 1,
                "rps": 1_000.0,
                "status": "ok",
                "client_cpu_us": 10.0,
            }
        )  # low concurrency rows do not set the bound
    return rows


def test_bound_splits_the_cores_between_compute_and_the_load_generator() -> None:
    [bound] = cpu.bounds(_rows([60.0, 46.0, 50.0]), rows_per_request=1, cores=2)
    assert bound.client_us == 46.0  # the cheapest hey measured at the top concurrency
    assert bound.limit == pytest.approx(2e6 / (14.0 + 46.0))
    assert (bound.best_server, bound.best) == ("conveyor-2", 5_002.0)  # the fastest Conveyor row, not lean


def test_multi_row_requests_share_the_load_generator_cost() -> None:
    [bound] = cpu.bounds(_rows([64.0, 64.0]), rows_per_request=8, cores=2)
    assert bound.limit == pytest.approx(2e6 / (14.0 + 64.0 / 8))
    assert bound.best == 5_001.0 * 8  # inferences/s, not requests/s


def test_no_bound_without_a_measured_ceiling() -> None:
    rows = [r for r in _rows([50.0]) if r.get("concurrency") != "b32"]
    assert cpu.bounds(rows, rows_per_request=1, cores=2) == []


def test_tree_cpu_counts_a_busy_child() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"],
        start_new_session=True,
    )
    try:
        meter = cpu.TreeCpu(child.pid)
        meter.start()
        time.sleep(0.6)
        spent = meter.stop()
        assert 0.2 < spent < 1.5, spent  # it spins: about the wall time, at most a little over
    finally:
        child.kill()
        child.wait()
    assert cpu.process_cpu_s(child.pid) == 0.0  # a gone process counts nothing


def test_each_protocol_gets_its_own_bound_and_best_row() -> None:
    rows = [r for r in _rows([60.0, 46.0]) if r["concurrency"] != 1]
    for r in rows:
        r["protocol"] = "V2 JSON"
    rows.append(
        {
            "model": "mlp",
            "server": "conveyor-bin",
            "protocol": "V2 binary",
            "concurrency": 32,
            "rps": 9_000.0,
            "status": "ok",
            "client_cpu_us": 30.0,
        }
    )
    json_bound, binary_bound = cpu.bounds(rows, rows_per_request=1, cores=2)
    assert (json_bound.protocol, json_bound.best_server, json_bound.client_us) == (
        "V2 JSON",
        "conveyor-1",
        46.0,
    )
    assert (binary_bound.protocol, binary_bound.best_server, binary_bound.client_us) == (
        "V2 binary",
        "conveyor-bin",
        30.0,
    )
