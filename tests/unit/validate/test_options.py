"""What `conveyor validate` refuses before any server starts: options that contradict each other, and expected
outputs that do not fit the model or the rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.validate.gates import Gates, PerformanceGate, RegressionGate, StabilityGate
from conveyor.validate.validator import ValidateOptions, _expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ValidateOptions(labels=Path("y.npy")), "--labels needs --dataset"),
        (ValidateOptions(expected=Path("e.npz")), "--expected needs --dataset"),
        (ValidateOptions(url="localhost:8080"), "--url must be an http:// or https:// URL"),
        (
            ValidateOptions(
                gates=Gates(
                    regression=RegressionGate(enabled=False),
                    performance=PerformanceGate(enabled=False),
                    stability=StabilityGate(enabled=False),
                )
            ),
            "every gate is disabled",
        ),
    ],
)
def test_contradicting_options_are_refused(options: ValidateOptions, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        options.check()


def test_expected_outputs_by_name_or_for_the_only_output(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", label=np.zeros(5, np.int64))
    assert set(_expected(tmp_path / "e.npz", ["label", "probabilities"], 5)) == {"label"}
    np.save(tmp_path / "e.npy", np.zeros((5, 3), np.float32))
    assert set(_expected(tmp_path / "e.npy", ["y"], 5)) == {"y"}


@pytest.mark.parametrize(
    ("outputs", "rows", "message"),
    [
        (["label", "probabilities"], 5, "the model has outputs .*; give an .npz with an array per output"),
        (["y"], 4, "'y' has 5 rows for 4 data rows"),
    ],
)
def test_expected_outputs_that_do_not_fit_are_refused(
    tmp_path: Path, outputs: list[str], rows: int, message: str
) -> None:
    np.save(tmp_path / "e.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(InvalidInput, match=message):
        _expected(tmp_path / "e.npy", outputs, rows)


def test_an_expected_output_the_model_lacks_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", score=np.zeros(5))
    with pytest.raises(InvalidInput, match=r"'score' is not an output of the model \['label'\]"):
        _expected(tmp_path / "e.npz", ["label"], 5)
