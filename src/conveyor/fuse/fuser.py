"""``conveyor fuse``: build one graph from registered parts (an ensemble or a pipeline), check it against
the parts run separately and combined in numpy, and register it with every part as its lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import max_abs_diff
from conveyor.formats.signature import Signature
from conveyor.fuse import ensemble, pipeline
from conveyor.fuse.labels import argmax_labels, near_ties
from conveyor.fuse.parts import Part, load_parts
from conveyor.optimize import report
from conveyor.optimize.data import Array, Inputs, draw_from_reference, load_inputs, row_count
from conveyor.optimize.report import Outputs
from conveyor.registry import Registry, VersionInfo
from conveyor.registry.refs import check_name

TOLERANCE = 1e-5
"""The largest difference allowed between the fused graph's float outputs and the parts' combined in
numpy; integer outputs (labels) must be equal on every row."""


@dataclass(frozen=True)
class FuseOptions:
    ensemble: str | None = None  # mean, weighted, vote; None: a pipeline
    pipeline: bool = False
    weights: list[float] | None = None
    sample: Path | None = None  # rows the parity check runs on; default: drawn from a part's reference
    intra_op_threads: int = 0

    def check(self) -> None:
        if (self.ensemble is None) == (not self.pipeline):
            raise InvalidInput("give one of --ensemble mean|weighted|vote or --pipeline")
        if self.pipeline and self.weights is not None:
            raise InvalidInput("--weights goes with --ensemble weighted or vote, not --pipeline")
        if self.ensemble is not None and self.ensemble not in ensemble.KINDS:
            raise InvalidInput(f"--ensemble must be {', '.join(ensemble.KINDS)}, not {self.ensemble!r}")


@dataclass
class FuseResult:
    parts: list[str]
    what: str  # "ensemble mean of a:1, b:1"
    parity: dict[str, Any] = field(default_factory=dict)
    version: VersionInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "registered": self.version.to_dict() if self.version else None,
            "fused": self.what,
            "parts": self.parts,
            "parity": self.parity,
        }


def fuse(registry: Registry, name: str, refs: list[str], options: FuseOptions) -> FuseResult:
    """Fuse the versions ``refs`` into the next version of model ``name``; InvalidInput for parts that do
    not fit together (naming what differs), ConversionError when the fused graph disagrees with them."""
    options.check()
    check_name(name)  # before the work, not at registration
    parts = load_parts(registry, refs)
    refs = [p.ref for p in parts]
    graph_name = f"conveyor fuse {name}"
    if options.ensemble is not None:
        eplan = ensemble.plan(parts, options.ensemble, options.weights)
        model = ensemble.build(parts, eplan, graph_name)
        what = ensemble.describe_plan(eplan, refs)
        settings: dict[str, Any] = {
            "kind": eplan.kind,
            "weights": list(eplan.weights),
            "labels": eplan.label_rules(),
        }
    else:
        pplan = pipeline.plan(parts)
        model = pipeline.build(parts, pplan, graph_name)
        what = pipeline.describe_plan(pplan, refs)
        settings = {"kind": "pipeline", "links": [[list(link) for link in ls] for ls in pplan.links]}
    fused = model.SerializeToString()
    signature = _signature(fused)
    rows, source = _rows(parts, signature, options.sample)
    # each part as it is served on its own: its registered bytes, before any opset conversion
    models = [report.load(p.onnx_bytes, p.version.name, options.intra_op_threads) for p in parts]
    got = report.run(report.load(fused, name, options.intra_op_threads), rows)
    if options.ensemble is not None:
        separate = [report.run(m, rows) for m in models]
        _check_soft_labels(eplan, parts, separate)
        expected = _ties_as_answered(eplan, ensemble.combine(eplan, separate), got)
        against = "the parts combined in numpy"
    else:
        expected = pipeline.chain(pplan, rows, lambda k, x: report.run(models[k], x))
        against = "the parts run one after another"
    parity = {"rows": row_count(rows), "source": source, "against": against, **compare(expected, got)}
    result = FuseResult(refs, what, parity)
    if parity["problems"]:
        raise ConversionError(
            f"the fused graph disagrees with {against}: {'; '.join(parity['problems'])}; nothing registered"
        )
    metadata: dict[str, Any] = {
        "source": what,
        "parts": refs,
        "fusion": {**settings, "parts": refs, "parity": parity},
    }
    reference = _reference(parts, signature, rows, options.sample)
    if reference is not None:
        metadata["reference"] = reference
    frameworks = {p.version.framework for p in parts}
    result.version = registry.register(
        name,
        fused,
        signature=signature.to_dict(),
        framework=frameworks.pop() if len(frameworks) == 1 else "onnx",
        description=what,
        metadata=metadata,
    )
    return result


def compare(expected: dict[str, Array], got: dict[str, Array]) -> dict[str, Any]:
    """Per output, the max |difference| (float outputs) or the share of rows that agree (integer ones), and
    every problem: a float output off by more than TOLERANCE, an integer one that differs on any row."""
    per_output: dict[str, float] = {}
    agreement: dict[str, float] = {}
    problems: list[str] = []
    for name, want in expected.items():
        have = got[name]
        if np.asarray(want).dtype.kind not in "fc":  # labels: integers (or strings, ending a pipeline)
            same = float(np.mean(np.asarray(want).reshape(-1) == np.asarray(have).reshape(-1)))
            agreement[name] = same
            if same < 1.0:
                problems.append(f"{name!r} differs on {1 - same:.2%} of the rows")
            continue
        diff = max_abs_diff(want, have, name)
        per_output[name] = diff
        if not diff <= TOLERANCE:
            problems.append(f"{name!r} differs by {diff:.3g} > {TOLERANCE:g}")
    return {
        "max_abs_diff": max(per_output.values(), default=0.0),
        "per_output": per_output,
        "agreement": agreement,
        "tolerance": TOLERANCE,
        "problems": problems,
    }


def _check_soft_labels(p: ensemble.EnsemblePlan, parts: list[Part], separate: list[Outputs]) -> None:
    """A soft label relies on each part answering the class of its highest probability: refused, naming
    the part, when one does not (rows where its top two are within TOLERANCE aside)."""
    for rule in p.soft:
        for part, out in zip(parts, separate, strict=True):
            own = out[rule.label]
            mine = argmax_labels(rule, out[rule.probabilities], own.dtype)
            differ = (np.asarray(own).reshape(-1) != mine.reshape(-1)) & ~near_ties(
                out[rule.probabilities], TOLERANCE
            ).reshape(-1)
            if differ.any():
                raise ConversionError(
                    f"{part.ref}'s {rule.label!r} is not the class of its highest {rule.probabilities!r} "
                    f"on {int(differ.sum())} rows: use --ensemble vote"
                )


def _ties_as_answered(p: ensemble.EnsemblePlan, expected: Outputs, got: Outputs) -> Outputs:
    """Where the averaged probabilities' top two are within TOLERANCE, either class is right: numpy's and
    ONNX Runtime's sums may round to different ones, so the fused graph's answer stands there."""
    out = dict(expected)
    for rule in p.soft:
        ties = near_ties(expected[rule.probabilities], TOLERANCE)
        out[rule.label] = np.where(ties, got[rule.label], expected[rule.label])
    return out


def _signature(fused: bytes) -> Signature:
    from conveyor.formats.result import signature_of

    return signature_of(fused)


def _rows(parts: list[Part], signature: Signature, sample: Path | None) -> tuple[Inputs, str]:
    """The rows the parity check runs on: the sample file, or rows drawn from the first part with
    reference statistics whose inputs are the fused model's."""
    if sample is not None:
        return load_inputs(sample, signature, "sample"), str(sample)
    reasons = []
    for p in parts:
        drawn = draw_from_reference(p.version.metadata.get("reference"), signature)
        if isinstance(drawn, dict):
            return drawn, f"drawn from {p.ref}'s reference statistics"
        reasons.append(f"{p.ref}: {drawn}")
    raise InvalidInput("no rows to check the fused graph on: give --sample (" + "; ".join(reasons) + ")")


def _reference(
    parts: list[Part], signature: Signature, rows: Inputs, sample: Path | None
) -> dict[str, Any] | None:
    """Drift monitoring's reference: from the sample given, else the first part's (the same inputs)."""
    if sample is not None:
        from conveyor.observe.reference import compute_reference

        return compute_reference(rows, signature, source="sample")
    found: dict[str, Any] | None = parts[0].version.metadata.get("reference")
    return found
