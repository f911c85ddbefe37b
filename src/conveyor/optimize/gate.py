"""The gate an optimized model must pass to be registered: a pure function of its measured numbers."""

from __future__ import annotations

import math


def judge(
    drift: float,
    accuracy_drop: float | None,
    *,
    max_drift: float | None,
    max_accuracy_drop: float | None,
    task: str | None = None,
) -> list[str]:
    """Why the candidate is refused, one phrase per bound it breaks (empty: it passes). A drift that is not
    a number (NaN, infinite: the model broke) breaks any drift bound."""
    problems = []
    if max_drift is not None and not (math.isfinite(drift) and drift <= max_drift):
        problems.append(f"max |drift| {drift:.3g} > {max_drift:g} (--max-drift)")
    if max_accuracy_drop is not None and accuracy_drop is not None and not accuracy_drop <= max_accuracy_drop:
        what = "RMSE increase" if task == "regression" else "accuracy drop"
        problems.append(f"{what} {accuracy_drop:.3g} > {max_accuracy_drop:g} (--max-accuracy-drop)")
    return problems
