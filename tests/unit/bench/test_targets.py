"""The benchmark's targets: ratios of rows of one protocol and one concurrency, each judged met or missed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# bench modules import each other flat; appended, so nothing of the suite is shadowed
sys.path.append(str(Path(__file__).resolve().parents[3] / "bench"))

import targets


def _row(
    server: str, c: int, rps: float, p50: float, protocol: str = "V2 JSON", **extra: Any
) -> dict[str, Any]:
    return {
        "model": "tiny",
        "server": server,
        "protocol": protocol,
        "concurrency": c,
        "rps": rps,
        "p50_ms": p50,
        "status": "ok",
        "errors": 0,
        "wrong": 0,
        **extra,
    }


RPS = targets.Target("g", "tiny", "conveyor-gw-inproc", "lean", 32, "rps", 1.0)
P50 = targets.Target("g", "tiny", "conveyor-gw-inproc", "lean", 1, "p50_ms", 1.15)
MEAN = targets.Target("g", "tiny", "conveyor-gw-inproc", "lean", 1, "mean_ms", 1.15)


def test_throughput_is_the_ratio_of_req_per_s_at_the_same_concurrency() -> None:
    rows = [
        _row("conveyor-gw-inproc", 32, 15_000, 2.0),
        _row("lean", 32, 19_000, 1.6),
        _row("lean", 1, 1_000, 1.0),  # another concurrency: never compared with c=32
    ]
    judged = targets.judge(RPS, rows)
    assert judged["ratio"] == pytest.approx(15_000 / 19_000)
    assert (judged["status"], judged["ours"], judged["theirs"]) == ("missed", 15_000, 19_000)
    rows[0]["rps"] = 19_000.0  # equal is enough for a ≥ 1.0× target
    assert targets.judge(RPS, rows)["status"] == "met"


def test_c1_is_judged_on_p50_and_mean_each() -> None:
    # same p50 at hey's 0.1 ms resolution, but the mean (1 / req/s) is 1.5× lean's: p50 met, mean missed
    rows = [_row("conveyor-gw-inproc", 1, 4_000, 0.2), _row("lean", 1, 6_000, 0.2)]
    p50, mean = targets.judge(P50, rows), targets.judge(MEAN, rows)
    assert (p50["status"], p50["ratio"]) == ("met", 1.0)
    assert mean["ours"] == pytest.approx(0.25) and mean["theirs"] == pytest.approx(1 / 6)
    assert (mean["status"], mean["ratio"]) == ("missed", pytest.approx(1.5))


def test_latency_targets_are_upper_bounds() -> None:
    rows = [_row("conveyor-gw-inproc", 1, 5_500, 0.23), _row("lean", 1, 6_000, 0.2)]
    assert targets.judge(P50, rows)["status"] == "met"  # 1.15×, on the bound
    rows[0]["p50_ms"] = 0.24
    assert targets.judge(P50, rows)["status"] == "missed"


def test_rows_of_different_protocols_are_never_compared() -> None:
    rows = [
        _row("conveyor-gw-inproc", 32, 30_000, 1.0, protocol="V2 binary"),
        _row("lean", 32, 10_000, 3.0),
    ]
    judged = targets.judge(RPS, rows)
    assert (judged["status"], judged["ratio"]) == ("not judged", None)
    assert "protocols differ" in judged["reason"]


def test_binary_target_holds_the_binary_row_against_the_binary_lean() -> None:
    [cnn_bin] = [t for t in targets.TARGETS if t.server == "conveyor-gw-inproc-bin"]
    assert (cnn_bin.reference, cnn_bin.bound) == ("lean-binary", 2.0)
    rows = [
        {**_row("conveyor-gw-inproc-bin", 32, 3_300, 9.0, protocol="V2 binary"), "model": "cnn"},
        {**_row("lean-binary", 32, 1_500, 20.0, protocol="V2 binary"), "model": "cnn"},
        {**_row("lean", 32, 800, 40.0), "model": "cnn"},  # the JSON lean would flatter it (4.1×)
    ]
    judged = targets.judge(cnn_bin, rows)
    assert (judged["status"], judged["protocol"]) == ("met", "V2 binary")
    assert judged["ratio"] == pytest.approx(2.2)


def test_a_missing_row_or_errors_leave_a_target_unjudged() -> None:
    missing = targets.judge(RPS, [_row("lean", 32, 19_000, 1.6)])
    assert missing["status"] == "not judged" and "conveyor-gw-inproc" in missing["reason"]
    faulty = [_row("conveyor-gw-inproc", 32, 25_000, 1.0, errors=3), _row("lean", 32, 19_000, 1.6)]
    assert targets.judge(RPS, faulty)["status"] == "not judged"  # fast with errors is not met


def test_every_target_of_the_issue_is_listed_once() -> None:
    texts = [t.text for t in targets.TARGETS]
    assert len(texts) == len(set(texts)) == 10
    judged = targets.judge_all([])
    assert [j["target"] for j in judged] == texts  # each printed, even when its rows did not run
    table = targets.markdown_table(judged)
    assert table.count("\n") == len(texts) + 1


def test_the_interleaved_runs_cover_exactly_the_rows_and_concurrencies_the_targets_name() -> None:
    import config
    import paired

    every = config.ROWS
    need = paired.needed("tiny", every)
    assert need == {
        "conveyor-gw-inproc": {1, 32},
        "conveyor-up-r2": {1, 32},
        "lean": {1, 32},
    }
    assert paired.needed("cnn", every) == {
        "conveyor-gw-inproc": {32},
        "lean": {32},
        "conveyor-gw-inproc-bin": {32},
        "lean-binary": {32},
    }
    without_lean = [r for r in every if r.name != "lean"]
    assert paired.needed("tiny", without_lean) == {}  # a target needs both of its rows


def test_the_interleaved_verdict_reads_the_medians_and_lists_each_round() -> None:
    import report

    rows = [_row("conveyor-gw-inproc", 32, 12_000, 2.0), _row("lean", 32, 10_000, 3.0)]
    rows[0]["rps_each"], rows[1]["rps_each"] = [11_000, 12_000, 13_000], [9_000, 10_000, 11_000]
    tiny32 = [t for t in targets.TARGETS if t.model == "tiny" and t.concurrency == 32]
    judged = targets.judge_all(rows, tiny32)
    table = targets.markdown_table(judged)
    assert "| 12,000 | 10,000 | 1.20× | met |" in table
    assert report._rounds(rows[0]) == "tiny conveyor-gw-inproc c=32: 11,000, 12,000, 13,000"


def test_interleaved_rows_are_judged_on_the_median_of_their_per_round_ratios() -> None:
    ours = _row("conveyor-up-r2", 32, 7_398, 4.1, rps_each=[7_398, 7_350, 8_578])
    lean = _row("lean", 32, 10_651, 2.8, rps_each=[10_112, 10_651, 10_823])
    up32 = [t for t in targets.TARGETS if t.server == "conveyor-up-r2" and t.concurrency == 32]
    [judged] = targets.judge_all([ours, lean], up32)
    # medians 7,398 / 10,651 = 0.69; per round 0.73, 0.69, 0.79: the runs side by side say 0.73
    assert round(judged["ratio"], 2) == 0.73 and judged["status"] == "met"
