"""The regression gate: the candidate's answers on the data, against the labels (accuracy, F1 or RMSE), the
expected outputs and the baseline's answers (drift, label agreement, accuracy lost). Pure: numbers in,
checks out."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.optimize import report
from conveyor.optimize.data import Array
from conveyor.validate.gates import RegressionGate
from conveyor.validate.verdict import Check, GateResult

Outputs = dict[str, Array]
BINS = 24


def judge(
    gate: RegressionGate,
    candidate: Outputs,
    *,
    labels: Array | None = None,
    expected: Outputs | None = None,
    baseline: Outputs | None = None,
) -> GateResult:
    """The gate's checks on ``candidate``'s answers; every bound that has what it needs is checked."""
    result = GateResult("regression")
    rows = len(next(iter(candidate.values())))
    bad = sum(int(np.count_nonzero(~np.isfinite(v))) for v in candidate.values() if v.dtype.kind == "f")
    result.checks.append(Check("non-finite outputs", float(bad), 0, unit="values"))
    result.numbers["rows"] = rows
    quality = report.quality(candidate, labels) if labels is not None else None
    base_quality = report.quality(baseline, labels) if labels is not None and baseline is not None else None
    result.numbers.update(quality=quality, baseline_quality=base_quality)
    if quality is not None:
        _quality_checks(gate, result, quality, base_quality)
    for against, reference in (("expected", expected), ("baseline", baseline)):
        if reference is None:
            continue
        missing = sorted(set(reference) - set(candidate))
        if missing:
            result.error = f"the candidate has no output {missing[0]!r} to compare with the {against}"
            return result
        drift = report.drift(reference, {k: candidate[k] for k in reference})
        result.numbers[f"drift_vs_{against}"] = drift
        result.numbers[f"drift_rows_vs_{against}"] = row_drift_histogram(reference, candidate)
        if gate.max_drift is not None:
            result.checks.append(Check(f"max |drift| vs {against}", drift["max_abs_diff"], gate.max_drift))
        if gate.min_agreement is not None and drift["agreement"]:
            agreement = min(drift["agreement"].values())
            result.checks.append(
                Check(f"labels agree with {against}", agreement, gate.min_agreement, op=">=")
            )
    return result


def _quality_checks(
    gate: RegressionGate, result: GateResult, quality: dict[str, Any], base: dict[str, Any] | None
) -> None:
    task = quality.get("task")
    if task == "classification" and gate.min_accuracy is not None:
        result.checks.append(
            Check(
                "accuracy",
                quality["accuracy"],
                gate.min_accuracy,
                op=">=",
                baseline=None if base is None else base.get("accuracy"),
            )
        )
    if task == "regression" and gate.max_rmse is not None:
        result.checks.append(
            Check("rmse", quality["rmse"], gate.max_rmse, baseline=None if base is None else base.get("rmse"))
        )
    if base is not None and gate.max_accuracy_drop is not None:
        drop = report.accuracy_drop(base, quality)
        if drop is not None:
            what = "RMSE increase" if task == "regression" else "accuracy drop"
            result.checks.append(Check(what, drop, gate.max_accuracy_drop, note="vs baseline"))


def row_drift_histogram(reference: Outputs, candidate: Outputs) -> dict[str, Any]:
    """How far each row's float outputs are from the reference's (the largest |difference| in the row),
    as a histogram, for the report's drift distribution."""
    floats = [n for n in reference if reference[n].dtype.kind == "f"]
    if not floats:
        return {"edges": [], "counts": [], "rows": 0}
    per_row = np.max(
        np.stack(
            [
                np.abs(
                    reference[n].astype(np.float64).reshape(len(reference[n]), -1)
                    - candidate[n].astype(np.float64).reshape(len(candidate[n]), -1)
                ).max(axis=1)
                for n in floats
            ]
        ),
        axis=0,
    )
    per_row = np.nan_to_num(per_row, nan=np.inf)
    finite = per_row[np.isfinite(per_row)]
    top = float(finite.max()) if finite.size else 0.0
    counts, edges = np.histogram(np.clip(per_row, 0, top), bins=BINS, range=(0.0, top or 1e-9))
    return {"edges": edges.tolist(), "counts": counts.tolist(), "rows": len(per_row)}
