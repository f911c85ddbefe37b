"""The gates file (``--gates FILE``, YAML or JSON): which bounds each gate holds a version to, with defaults
that catch a regression without failing on a busy machine's noise. Every field is optional.

    regression:  {minAccuracy: 0.9, maxAccuracyDrop: 0.01, maxDrift: 0.05, minAgreement: 0.99}
    performance: {concurrency: 4, seconds: 3, maxP99Ms: 50, maxP50Increase: 1.0}
    stability:   {seconds: 10, maxErrors: 0, maxRssGrowthMb: 64}
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from conveyor.errors import InvalidInput
from conveyor.spec.base import SpecModel
from conveyor.spec.loader import dotted_path
from conveyor.spec.yamlsource import YamlSyntaxError, read_documents

MAX_SECONDS = 3600.0
MAX_CONCURRENCY = 256


class RegressionGate(SpecModel):
    """Answers on the data: against the labels, the expected outputs and the baseline's answers."""

    enabled: bool = Field(
        default=True, description="false: the gate is not run (and not part of the verdict)."
    )
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="With labels: accuracy at least."
    )
    max_rmse: float | None = Field(default=None, ge=0, description="With labels, a regressor: RMSE at most.")
    max_accuracy_drop: float | None = Field(
        default=0.01,
        ge=0,
        description="With labels and a baseline: accuracy points lost at most (0.01: one point), or RMSE "
        "gained for a regressor.",
    )
    max_drift: float | None = Field(
        default=None,
        ge=0,
        description="Largest |difference| of a float output from the expected outputs or the baseline's.",
    )
    min_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of rows whose integer outputs (labels) equal the expected or the baseline's.",
    )
    batch: int = Field(default=64, ge=1, le=4096, description="Rows per request when the data is sent.")


class PerformanceGate(SpecModel):
    """Latency and throughput of real requests at a concurrency."""

    enabled: bool = True
    concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY, description="Requests in flight at once.")
    seconds: float = Field(default=3.0, gt=0, le=MAX_SECONDS, description="How long the load runs.")
    batch: int = Field(default=1, ge=1, le=4096, description="Rows per request.")
    max_p50_ms: float | None = Field(default=None, gt=0, description="Median latency at most (ms).")
    max_p99_ms: float | None = Field(default=None, gt=0, description="99th percentile latency at most (ms).")
    min_throughput: float | None = Field(default=None, gt=0, description="Requests per second at least.")
    max_p50_increase: float | None = Field(
        default=1.0,
        ge=0,
        description="With a baseline: p50 at most (1 + this) x the baseline's (1.0: twice).",
    )
    max_p99_increase: float | None = Field(
        default=2.0, ge=0, description="With a baseline: p99 at most (1 + this) x the baseline's."
    )
    max_throughput_drop: float | None = Field(
        default=0.5,
        ge=0,
        le=1,
        description="With a baseline: throughput at least (1 - this) x the baseline's.",
    )
    max_errors: int = Field(default=0, ge=0, description="Failed requests (non-200, refused) at most.")


class StabilityGate(SpecModel):
    """A soak: steady load for a while, no errors, resident memory that does not keep growing."""

    enabled: bool = True
    seconds: float = Field(default=10.0, gt=0, le=MAX_SECONDS, description="How long the soak runs.")
    concurrency: int = Field(default=2, ge=1, le=MAX_CONCURRENCY)
    max_errors: int = Field(default=0, ge=0, description="Failed requests during the soak at most.")
    max_rss_growth_mb: float = Field(
        default=64.0,
        ge=0,
        description="The server's resident memory at the end of the soak minus at its start, at most (MiB).",
    )


class Gates(SpecModel):
    regression: RegressionGate = Field(default_factory=RegressionGate)
    performance: PerformanceGate = Field(default_factory=PerformanceGate)
    stability: StabilityGate = Field(default_factory=StabilityGate)


def load_gates(path: Path | None) -> Gates:
    """The gates in ``path`` (defaults for what it leaves out; all defaults without a file); InvalidInput
    naming the file, the line and the field."""
    if path is None:
        return Gates()
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"gates file {path}: {exc.strerror or exc}") from None
    try:
        docs = read_documents(text)
    except YamlSyntaxError as exc:
        raise InvalidInput(f"gates file {path}:{exc.line}: {exc.message}") from None
    if len(docs) > 1:
        raise InvalidInput(f"gates file {path}: one document expected, found {len(docs)}")
    data = docs[0].value if docs else {}
    if not isinstance(data, dict):
        raise InvalidInput(f"gates file {path}: a mapping of regression, performance, stability expected")
    try:
        return Gates.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = tuple(first["loc"])
        line = docs[0].line_of(where)
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise InvalidInput(f"gates file {path}:{line}: {dotted_path(where)}: {message}") from None


def dump_gates(gates: Gates) -> str:
    """The gates in effect, as YAML (the report shows them)."""
    text: str = yaml.safe_dump(gates.model_dump(mode="json", by_alias=True), sort_keys=False)
    return text
