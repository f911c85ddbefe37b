"""`conveyor models show`'s validated line: the newest verdict, the gates that failed, the baseline and the
report; a version never validated says how to validate it."""

from __future__ import annotations

from conveyor.cli.models import _validated_line


def test_a_failed_run_names_its_failed_gates_and_the_report() -> None:
    run = {
        "passed": False,
        "at": "2026-12-01T21:00:00+00:00",
        "baseline": "mlp:1",
        "report": "/r/mlp-3.html",
        "gates": [{"gate": "regression", "passed": False}, {"gate": "performance", "passed": True}],
    }
    line = _validated_line(run)
    assert line.startswith("FAILED (regression) 2026-12-01 ")
    assert line.endswith(" against mlp:1; report /r/mlp-3.html")


def test_a_pass_without_baseline_or_report_and_a_version_never_validated() -> None:
    run = {"passed": True, "at": "2026-12-01T21:00:00+00:00", "gates": []}
    assert _validated_line(run).startswith("passed ")
    assert _validated_line(None) == "- (never: conveyor validate)"
