"""The authentication row of the bench: `conveyor up` clients send the admin token, and what it costs is
judged as the median of per-round ratios against the same Deployment public."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# bench modules import each other flat; appended, so nothing of the suite is shadowed
sys.path.append(str(Path(__file__).resolve().parents[3] / "bench"))

import auth
import auth_cost
import load
import report
from models import BenchModel
from servers import ConveyorUp

from conveyor.spec.loader import load_file

TOKEN = "cvy_0123456789abcdef_" + "a" * 43


def _model(tmp_path: Path) -> BenchModel:
    x = np.zeros((1, 20), np.float32)
    return BenchModel("tiny", tmp_path / "tiny.onnx", "input", (20,), x, [x], [{"label": np.zeros(1)}])


def _spec(server: ConveyorUp, tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    server.command(_model(tmp_path), 8080, tmp_path)
    return tmp_path / "tiny-deployment.yaml"


def test_conveyor_up_clients_send_the_admin_token_written_under_its_home(tmp_path: Path) -> None:
    server = ConveyorUp(replicas=1)
    _spec(server, tmp_path)
    assert server.auth_headers() == {}  # not up yet: no token to send, the readiness poll keeps trying
    home = tmp_path / "conveyor-up-home"
    home.mkdir()
    (home / "admin.token").write_text(TOKEN + "\n")
    assert server.auth_headers() == {"authorization": f"Bearer {TOKEN}"}


def test_each_start_reads_the_token_of_its_own_home(tmp_path: Path) -> None:
    server = ConveyorUp(replicas=1)
    for i, token in enumerate((TOKEN, TOKEN.replace("a", "b"))):
        workdir = tmp_path / str(i)
        (workdir / "conveyor-up-home").mkdir(parents=True)
        (workdir / "conveyor-up-home" / "admin.token").write_text(token)
        _spec(server, workdir)
        assert server.auth_headers() == {"authorization": f"Bearer {token}"}


def test_a_public_deployment_is_called_without_a_token(tmp_path: Path) -> None:
    server = ConveyorUp(replicas=1, public=True)
    spec = _spec(server, tmp_path)
    (tmp_path / "conveyor-up-home").mkdir()
    (tmp_path / "conveyor-up-home" / "admin.token").write_text(TOKEN)
    assert server.auth_headers() == {}
    (deployment,) = load_file(spec)
    assert deployment.spec.public is True  # type: ignore[attr-defined]


def test_the_token_deployment_has_the_same_spec_but_public(tmp_path: Path) -> None:
    token, public = (s.server for s in auth.sides())
    token_spec = _spec(token, tmp_path / "a").read_text()
    public_spec = _spec(public, tmp_path / "b").read_text()
    assert public_spec.replace("  public: true\n", "") == token_spec
    assert (token.replicas, public.replicas) == (1, 1)


def _runs(*ok: int) -> list[load.LoadResult]:
    return [load.LoadResult(requests=n, status={200: n}) for n in ok]


def test_the_verdict_is_the_median_of_the_per_round_ratios() -> None:
    verdict = auth.judge(_runs(9_800, 5_000, 9_900), _runs(10_000, 10_000, 10_000), 0, 401)
    assert verdict["ratios_each"] == [0.98, 0.5, 0.99]
    assert verdict["ratio"] == 0.98
    assert verdict["status"] == "met"


def test_more_than_three_percent_slower_with_a_token_misses() -> None:
    verdict = auth.judge(_runs(9_600, 9_600), _runs(10_000, 10_000), 0, 401)
    assert verdict["status"] == "missed"


def test_errors_or_a_gateway_that_lets_anyone_in_miss_whatever_the_ratio() -> None:
    assert auth.judge(_runs(10_000), _runs(10_000), 1, 401)["status"] == "missed"
    # a token deployment that answers without a token measures nothing about authentication
    assert auth.judge(_runs(10_000), _runs(10_000), 0, 200)["status"] == "missed"


def _result() -> dict[str, Any]:
    row: dict[str, Any] = {
        "note": "n",
        "ok_per_s": 9_000.0,
        "p50_ms": 3.0,
        "p99_ms": 9.0,
        "server_cpu_us": 150.0,
        "errors": 0,
        "wrong": 0,
    }
    verdict = auth.judge(_runs(9_900), _runs(10_000), 0, 401)
    return {"rows": [{**row, "row": "token"}, {**row, "row": "public"}], "verdict": verdict}


def test_the_report_has_an_authentication_section_with_both_rows_and_the_verdict() -> None:
    meta = {
        "machine": {"date": "d", "cpu": "c", "cores": 2, "ram_gib": 1, "kernel": "k", "python": "3"}
        | {"onnxruntime": "1", "hey": "h", "conveyor_commit": "x", "load_average_at_start": [1.0]},
        "total_s": 60.0,
        "duration_s": 3.0,
        "warmup_s": 1.0,
        "peer_versions": {},
        "auth": _result(),
    }
    text = report.markdown(meta, [])
    section = text[text.index(auth.TITLE) :]
    assert "| token | n | 9,000 |" in section
    assert "| public | n | 9,000 |" in section
    assert "| 401 | 0.990× | 0.990 | met | - |" in section


def test_the_in_process_cost_times_the_header_line_and_the_check_of_the_token() -> None:
    cost = auth_cost.measure(number=2_000)
    assert set(cost) == {"header_us", "authorize_us", "total_us"}
    assert cost["total_us"] == pytest.approx(cost["header_us"] + cost["authorize_us"], abs=0.02)
    assert abs(cost["total_us"]) < 1_000  # microseconds, not a stray unit


def test_the_section_puts_the_in_process_cost_beside_the_token_rows_cpu() -> None:
    result = _result() | {"inprocess": {"header_us": 0.5, "authorize_us": 1.0, "total_us": 1.5}}
    text = "\n".join(auth.markdown(result))
    assert "the token adds 1.50 µs to a gateway request" in text
    assert "1.0% of the token row's server CPU per request" in text
