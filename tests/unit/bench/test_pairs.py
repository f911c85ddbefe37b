"""The sections of the bench judged on pairs of servers (overload, metrics-and-logging cost): per-round
ratios, what breaks a verdict, and that the cost row's servers really run with metrics and logs off."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

# bench modules import each other flat; appended, so nothing of the suite is shadowed
sys.path.append(str(Path(__file__).resolve().parents[3] / "bench"))

import load
import observe_cost
import overload
import pairs
from models import BenchModel
from servers import ConveyorGateway


def _result(ok: int, **status: int) -> load.LoadResult:
    return load.LoadResult(requests=ok, status={200: ok, **{int(k[1:]): v for k, v in status.items()}})


def _runs(base: list[load.LoadResult], variant: list[load.LoadResult]) -> pairs.PairRuns:
    pair = pairs.Pair("`conveyor serve`", ConveyorGateway(1, note="off"), ConveyorGateway(1, note="on"))
    return pairs.PairRuns(pair, base, variant)


def test_the_ratio_is_per_round_variant_over_base_and_5xx_or_broken_connections_count() -> None:
    runs = _runs([_result(1000), _result(800), _result(0)], [_result(960), _result(820), _result(10)])
    assert runs.ratios() == [0.96, 1.025]  # a round where the base answered nothing has no ratio
    assert runs.broken() == 0
    failing = _runs([_result(1000, s503=2)], [load.LoadResult(status={200: 5}, transport_errors=1)])
    assert failing.broken() == 3
    rows = pairs.rows([runs], duration_s=2.0)
    assert [r["note"] for r in rows] == ["off", "on"] and rows[0]["ok_per_s"] == 400.0


def test_the_cost_rows_run_the_same_server_with_metrics_and_logs_off_and_with_the_defaults(
    tmp_path: Path,
) -> None:
    x = np.zeros((1, 20), np.float32)
    model = BenchModel("tiny", tmp_path / "tiny.onnx", "input", (20,), x, [x], [{"label": np.zeros(1)}])
    for i, pair in enumerate(observe_cost.pairs()):
        work = tmp_path / str(i)
        work.mkdir()
        (off_argv, off_env), (on_argv, on_env) = (
            s.command(model, 8080, work) for s in (pair.base, pair.variant)
        )
        # the same server, the same model, the same port (up picks a free port for its API each time)
        assert [re.sub(r"--api-port \d+", "", a) for a in off_argv] == [
            re.sub(r"--api-port \d+", "", a) for a in on_argv
        ]
        assert off_env["CONVEYOR_METRICS_ENABLED"] == "false" and off_env["CONVEYOR_ACCESS_LOG_SAMPLE"] == "0"
        assert off_env["CONVEYOR_LOG_TO_FILE"] == "false"
        assert not any(k in on_env for k in observe_cost.OFF)
    assert [p.group for p in overload.pairs()] == ["`conveyor serve`", "`conveyor up`, 2 replicas"]


def test_the_server_cpu_ratio_is_per_round_and_skips_rounds_without_a_reading() -> None:
    runs = _runs([_result(1000)] * 3, [_result(950)] * 3)
    runs.base_cpu_us, runs.variant_cpu_us = [200.0, None, 250.0], [210.0, 220.0, None]
    assert runs.cpu_ratios() == [1.05]
    rows = pairs.rows([runs], duration_s=1.0)
    assert [r["server_cpu_us"] for r in rows] == [225.0, 215.0]
