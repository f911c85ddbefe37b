"""``conveyor optimize``: build candidates from a registered version, measure them against it, gate them,
and register the one kept as a new version of the same model with the parent as its lineage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.result import signature_of
from conveyor.formats.signature import Signature
from conveyor.optimize import report
from conveyor.optimize.data import (
    Array,
    Inputs,
    draw_from_reference,
    load_inputs,
    load_labels,
    row_count,
)
from conveyor.optimize.gate import judge
from conveyor.optimize.graph import LEVELS, optimize_graph
from conveyor.optimize.quantize import METHODS, Method, quantize
from conveyor.registry import Registry, VersionInfo
from conveyor.runtime.onnx_model import OnnxModel

FALLBACK = ("static", "dynamic", "none")
"""``--fallback`` tries these from the one asked for (all of them when none is), and keeps the smallest that
passes; "none" is the parent as it is (with only ``--graph-opt`` applied)."""


class Progress(Protocol):
    """Told of each step (a candidate built, a batch size timed), so a CLI can draw a bar."""

    def start(self, total: int) -> None: ...

    def advance(self, what: str) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        pass

    def advance(self, what: str) -> None:
        pass


@dataclass(frozen=True)
class OptimizeOptions:
    quantize: str | None = None  # dynamic, static, fp16; None: no quantization
    graph_opt: str | None = None  # basic, extended, all; None: none
    calibration: Path | None = None
    data: Path | None = None  # rows to judge on; default: the calibration rows
    labels: Path | None = None  # one label per row of the data
    max_drift: float | None = None
    max_accuracy_drop: float | None = None
    fallback: bool = False
    measure_seconds: float = 0.5  # per model and batch size
    intra_op_threads: int = 0

    def chain(self) -> list[str]:
        """The methods to try, in order."""
        if self.quantize is not None and self.quantize not in METHODS:
            raise InvalidInput(f"--quantize must be {', '.join(METHODS)}, not {self.quantize!r}")
        if self.graph_opt is not None and self.graph_opt not in LEVELS:
            raise InvalidInput(f"--graph-opt must be {', '.join(LEVELS)}, not {self.graph_opt!r}")
        for flag, bound in (("--max-drift", self.max_drift), ("--max-accuracy-drop", self.max_accuracy_drop)):
            if bound is not None and not bound >= 0:
                raise InvalidInput(f"{flag} must be a number >= 0, not {bound}")
        if self.max_accuracy_drop is not None and self.labels is None:
            raise InvalidInput(
                "--max-accuracy-drop needs --labels (the true answer for each row of the data)"
            )
        if not self.fallback:
            if self.quantize is None and self.graph_opt is None:
                raise InvalidInput("nothing to do: give --quantize, --graph-opt or --fallback")
            return [self.quantize or "none"]
        if self.quantize is None:
            return list(FALLBACK)
        return (
            list(FALLBACK[FALLBACK.index(self.quantize) :])
            if self.quantize in FALLBACK
            else [self.quantize, "none"]
        )


@dataclass
class Candidate:
    """One method tried: its numbers, and why it was refused or skipped (both empty: it passed)."""

    method: str
    size_bytes: int | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] | None = None
    accuracy_drop: float | None = None
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None
    onnx_bytes: bytes = field(default=b"", repr=False)

    @property
    def passed(self) -> bool:
        return not self.problems and self.skipped is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["onnx_bytes"]
        return {**out, "passed": self.passed}


@dataclass
class OptimizeResult:
    parent: VersionInfo
    parent_numbers: dict[str, Any]  # size_bytes, timing, quality
    candidates: list[Candidate]
    data: dict[str, Any]  # where the rows came from
    bounds: dict[str, Any]
    chosen: Candidate | None = None
    version: VersionInfo | None = None
    refusal: str | None = None  # why nothing was registered

    def report(self) -> dict[str, Any]:
        """What is stored with the new version and printed by ``--json``."""
        return {
            "parent": self.parent.ref,
            "method": self.chosen.method if self.chosen else None,
            "graph_opt": self.bounds.get("graph_opt"),
            "data": self.data,
            "bounds": {k: v for k, v in self.bounds.items() if k != "graph_opt"},
            "before": self.parent_numbers,
            "after": self.chosen.to_dict() if self.chosen else None,
            "tried": [c.to_dict() for c in self.candidates],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "registered": self.version.to_dict() if self.version else None,
            "refused": self.refusal,
            "report": self.report(),
        }


def optimize(
    registry: Registry, ref: str, options: OptimizeOptions, progress: Progress | None = None
) -> OptimizeResult:
    """Optimize ``ref`` as ``options`` say; the result names the new version, or why none was registered
    (``refusal``: a bound broken, with the numbers). Bad options or data raise InvalidInput first."""
    progress = progress or _Silent()
    chain = options.chain()
    parent = registry.resolve(ref)
    parent_bytes = registry.artifact_bytes(parent)
    signature = Signature.from_dict(parent.signature)
    data, labels, calibration, where = _rows(parent, signature, options, need_calibration="static" in chain)
    measured = [m for m in chain if m != "none" or options.graph_opt]
    sizes = len(report.BATCHES)
    progress.start(sizes + len(measured) * (1 + sizes))

    base = report.load(parent_bytes, parent.name, options.intra_op_threads)
    data, labels = _whole_batches(base, data, labels)
    base_out = report.run(base, data)
    base_quality = report.quality(base_out, labels) if labels is not None else None
    base_timing = report.timing(
        base, data, seconds=options.measure_seconds, on_batch=lambda: progress.advance(f"timing {parent.ref}")
    )
    parent_numbers = {"size_bytes": parent.size_bytes, "timing": base_timing, "quality": base_quality}
    bounds = {
        "max_drift": options.max_drift,
        "max_accuracy_drop": options.max_accuracy_drop,
        "graph_opt": options.graph_opt,
    }

    candidates = []
    for method in chain:
        if method == "none" and not options.graph_opt:
            # the parent as it is: nothing to build or time, and nothing to register should it be kept
            candidates.append(
                Candidate(method, parent.size_bytes, base_timing, {"max_abs_diff": 0.0}, base_quality, 0.0)
            )
            continue
        candidate = _try(
            method, parent_bytes, parent.name, options, calibration, progress, fallback=options.fallback
        )
        if candidate.skipped is None:
            _measure(candidate, parent, data, base_out, labels, base_quality, options, progress)
        else:
            for _ in range(sizes):
                progress.advance(f"{method} skipped")
        candidates.append(candidate)

    result = OptimizeResult(parent, parent_numbers, candidates, where, bounds)
    passing = [c for c in candidates if c.passed]
    if not passing:
        tried = "; ".join(_why(c) for c in candidates)
        result.refusal = f"refused: {tried}; nothing registered"
        return result
    chosen = min(passing, key=lambda c: (c.size_bytes or 0, chain.index(c.method)))
    result.chosen = chosen
    if not chosen.onnx_bytes:
        failed = "; ".join(_why(c) for c in candidates if not c.passed)
        result.refusal = f"no optimization passed ({failed}); {parent.ref} stays as it is; nothing registered"
        return result
    result.version = _register(registry, parent, chosen, result)
    return result


def _measure(
    candidate: Candidate,
    parent: VersionInfo,
    data: Inputs,
    base_out: report.Outputs,
    labels: Array | None,
    base_quality: dict[str, Any] | None,
    options: OptimizeOptions,
    progress: Progress,
) -> None:
    """The candidate's drift, quality and timing on the parent's rows, and what the gate says of them."""
    model = report.load(candidate.onnx_bytes, parent.name, options.intra_op_threads)
    out = report.run(model, data)
    candidate.drift = report.drift(base_out, out)
    if labels is not None and base_quality is not None:
        candidate.quality = report.quality(out, labels)
        candidate.accuracy_drop = report.accuracy_drop(base_quality, candidate.quality)
    candidate.problems = judge(
        candidate.drift["max_abs_diff"],
        candidate.accuracy_drop,
        max_drift=options.max_drift,
        max_accuracy_drop=options.max_accuracy_drop,
        task=(base_quality or {}).get("task"),
    )
    what = f"timing {candidate.method}"
    candidate.timing = report.timing(
        model, data, seconds=options.measure_seconds, on_batch=lambda: progress.advance(what)
    )


def _whole_batches(model: OnnxModel, data: Inputs, labels: Array | None) -> tuple[Inputs, Array | None]:
    """The rows a model of a fixed batch size can take: whole batches of it (InvalidInput if not one)."""
    size = report.fixed_batch(model)
    rows = row_count(data)
    if size is None or rows % size == 0:
        return data, labels
    keep = rows // size * size
    if keep == 0:
        raise InvalidInput(f"the model takes batches of {size} rows; the data has {rows}")
    return {k: v[:keep] for k, v in data.items()}, None if labels is None else labels[:keep]


def _why(c: Candidate) -> str:
    return f"{c.method}: {c.skipped or ', '.join(c.problems)}"


def _try(
    method: str,
    parent_bytes: bytes,
    name: str,
    options: OptimizeOptions,
    calibration: Inputs | None,
    progress: Progress,
    *,
    fallback: bool,
) -> Candidate:
    """Build one candidate; in a fallback chain a method that cannot be built is skipped, not fatal."""
    try:
        if method == "static" and calibration is None:
            raise InvalidInput("static quantization needs calibration data: give --calibration")
        data = parent_bytes if method == "none" else quantize(parent_bytes, cast(Method, method), calibration)
        if options.graph_opt:
            data = optimize_graph(data, options.graph_opt)
    except (InvalidInput, ConversionError) as e:
        if not fallback:
            raise
        progress.advance(f"{method} skipped")
        return Candidate(method, skipped=e.message)
    progress.advance(f"built {method}")
    return Candidate(method, size_bytes=len(data), onnx_bytes=data)


def _rows(
    parent: VersionInfo, signature: Signature, options: OptimizeOptions, *, need_calibration: bool
) -> tuple[Inputs, Array | None, Inputs | None, dict[str, Any]]:
    """(rows to judge on, their labels, calibration rows, where each came from)."""
    reference = parent.metadata.get("reference")
    calibration: Inputs | None = None
    drawn: Inputs | str | None = None
    if options.calibration is not None:
        calibration = load_inputs(options.calibration, signature, "calibration data")
        cal_source = str(options.calibration)
    elif need_calibration or options.data is None:
        drawn = draw_from_reference(reference, signature)
        if isinstance(drawn, dict):
            calibration = drawn
            cal_source = f"drawn from {parent.ref}'s reference statistics"
        else:
            cal_source = f"none: {drawn}"
    else:
        cal_source = "not needed"
    if options.data is not None:
        data = load_inputs(options.data, signature, "data")
        data_source = str(options.data)
    elif calibration is not None:
        data, data_source = calibration, cal_source
    else:
        raise InvalidInput(
            f"no rows to measure {parent.ref} on: give --data or --calibration "
            f"({drawn if isinstance(drawn, str) else 'no reference statistics'})"
        )
    labels = None
    if options.labels is not None:
        if options.data is None and options.calibration is None:
            raise InvalidInput("--labels needs --data (or --calibration): the rows the labels belong to")
        labels = load_labels(options.labels, row_count(data))
    where = {
        "rows": row_count(data),
        "source": data_source,
        "calibration": cal_source,
        "labels": str(options.labels) if options.labels else None,
    }
    return data, labels, calibration, where


def _register(
    registry: Registry, parent: VersionInfo, chosen: Candidate, result: OptimizeResult
) -> VersionInfo:
    what = chosen.method if chosen.method != "none" else "graph optimization"
    if chosen.method != "none" and result.bounds.get("graph_opt"):
        what += f" + graph optimization ({result.bounds['graph_opt']})"
    metadata: dict[str, Any] = {
        "source": f"{what} of {parent.ref}",
        "optimization": result.report(),
    }
    if "reference" in parent.metadata:  # the same inputs: drift is still measured against them
        metadata["reference"] = parent.metadata["reference"]
    return registry.register(
        parent.name,
        chosen.onnx_bytes,
        signature=signature_of(chosen.onnx_bytes).to_dict(),
        framework=parent.framework,
        description=f"{what} of {parent.ref}",
        parent_version=parent.version,
        metadata=metadata,
    )
