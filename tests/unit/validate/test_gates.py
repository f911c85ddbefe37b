"""The gates file: defaults without one, camelCase fields over the defaults, and every mistake one line naming
the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import InvalidInput
from conveyor.validate.gates import Gates, dump_gates, load_gates


def test_without_a_file_every_gate_runs_with_the_defaults() -> None:
    gates = load_gates(None)
    assert gates == Gates()
    assert (gates.performance.concurrency, gates.performance.max_p50_increase) == (4, 1.0)
    assert (gates.stability.seconds, gates.stability.max_rss_growth_mb, gates.stability.max_errors) == (
        10,
        64,
        0,
    )
    assert gates.regression.max_accuracy_drop == 0.01 and gates.regression.max_drift is None


def test_a_file_sets_what_it_names_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(
        "regression:\n  maxDrift: 0.05\n"
        "performance:\n  maxP99Ms: 20\n  seconds: 1\n"
        "stability:\n  enabled: false\n"
    )
    gates = load_gates(path)
    assert (gates.regression.max_drift, gates.regression.max_accuracy_drop) == (0.05, 0.01)
    assert (gates.performance.max_p99_ms, gates.performance.seconds, gates.performance.concurrency) == (
        20,
        1,
        4,
    )
    assert not gates.stability.enabled


def test_json_is_a_gates_file_too(tmp_path: Path) -> None:
    path = tmp_path / "gates.json"
    path.write_text('{"performance": {"concurrency": 8}}')
    assert load_gates(path).performance.concurrency == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("performance:\n  maxP99: 5\n", "gates.yaml:2: performance.maxP99: unknown field"),
        (
            "performance:\n  concurrency: 0\n",
            "gates.yaml:2: performance.concurrency: Input should be greater than or equal to 1",
        ),
        ("stability:\n  seconds: ten\n", "gates.yaml:2: stability.seconds: Input should be a valid number"),
        ("- 1\n", "gates.yaml: a mapping of regression, performance, stability expected"),
        ("performance: [\n", "gates.yaml:2: "),
        ("a: 1\n---\nb: 2\n", "gates.yaml: one document expected, found 2"),
    ],
)
def test_a_mistake_is_one_line_naming_the_file_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as info:
        load_gates(path)
    assert str(info.value).startswith(f"gates file {tmp_path}/{message}") or message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"gates file .*nope.yaml: No such file or directory"):
        load_gates(tmp_path / "nope.yaml")


def test_the_gates_in_effect_read_back_as_a_gates_file(tmp_path: Path) -> None:
    path = tmp_path / "back.yaml"
    path.write_text(dump_gates(Gates()))
    assert load_gates(path) == Gates()
