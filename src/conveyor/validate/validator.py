"""``conveyor validate``: start the real server for a version (and for its baseline), drive it with real
requests through the gates, write the HTML report and store the verdict on the version."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from conveyor.errors import InvalidInput, Unavailable
from conveyor.formats.samples import load_sample
from conveyor.formats.signature import Signature
from conveyor.optimize.data import Array, Inputs, draw_from_reference, load_inputs, load_labels, row_count
from conveyor.registry import Registry, VersionInfo
from conveyor.registry.validations import ValidationInfo
from conveyor.validate import load, performance, regression, stability
from conveyor.validate.gates import Gates
from conveyor.validate.server import Endpoint, started
from conveyor.validate.verdict import GateResult, passed, summary

WARM_UP_S = 0.5
ROUNDS = 3
"""Turns the candidate and the baseline take at the performance load, each ``seconds / ROUNDS`` long."""
READY_DEADLINE_S = 30.0


class Progress(Protocol):
    """Told of each step, so a CLI can say what runs now."""

    def step(self, what: str) -> None: ...


class _Silent:
    def step(self, what: str) -> None:
        pass


@dataclass(frozen=True)
class ValidateOptions:
    dataset: Path | None = None  # rows to send; default: drawn from the version's reference statistics
    labels: Path | None = None  # the true answer per row of the dataset
    expected: Path | None = None  # the outputs the version should give on the dataset (.npz / .npy)
    baseline: str | None = None  # the version to compare with, served the same way
    url: str | None = None  # validate the endpoint someone runs there instead of starting one
    headers: dict[str, str] = field(default_factory=dict)  # sent to ``url`` (a bearer token)
    gates: Gates = field(default_factory=Gates)
    report: Path | None = None  # the HTML report; None: none written
    store: bool = True  # the verdict on the version (and its validated tag)

    def check(self) -> None:
        if self.labels is not None and self.dataset is None:
            raise InvalidInput("--labels needs --dataset: the rows the labels belong to")
        if self.expected is not None and self.dataset is None:
            raise InvalidInput("--expected needs --dataset: the rows the expected outputs belong to")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise InvalidInput(f"--url must be an http:// or https:// URL, not {self.url!r}")
        g = self.gates
        if not (g.regression.enabled or g.performance.enabled or g.stability.enabled):
            raise InvalidInput("every gate is disabled in the gates file: nothing to validate")


@dataclass
class ValidationResult:
    version: VersionInfo
    baseline: VersionInfo | None
    gates: list[GateResult]
    data: dict[str, Any]
    spec: Gates
    endpoint: str
    report: Path | None = None
    stored: ValidationInfo | None = None
    latency: dict[str, Any] = field(default_factory=dict)  # histograms for the report

    @property
    def passed(self) -> bool:
        return passed(self.gates)

    @property
    def summary(self) -> str:
        return summary(self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version.ref,
            "baseline": self.baseline.ref if self.baseline else None,
            "passed": self.passed,
            "summary": self.summary,
            "endpoint": self.endpoint,
            "data": self.data,
            "gates": [g.to_dict() for g in self.gates],
            "gates_spec": self.spec.model_dump(mode="json", by_alias=True),
            "report": str(self.report) if self.report else None,
            "stored": self.stored.to_dict() if self.stored else None,
        }


def validate(
    registry: Registry, ref: str, options: ValidateOptions, progress: Progress | None = None
) -> ValidationResult:
    """Run the gates ``options`` name on ``ref``; the result says whether every one passed. Bad options or
    data raise InvalidInput before any server starts; a server that does not start is Unavailable."""
    progress = progress or _Silent()
    options.check()
    version = registry.resolve(ref)
    baseline = registry.resolve(options.baseline) if options.baseline else None
    if baseline is not None and baseline.ref == version.ref:
        raise InvalidInput(
            f"--baseline {options.baseline} is {version.ref} itself: compare with another version"
        )
    signature = Signature.from_dict(version.signature)
    inputs, where = _rows(version, signature, options)
    labels = load_labels(options.labels, row_count(inputs)) if options.labels else None
    outputs = [t.name for t in signature.outputs]
    expected = _expected(options.expected, outputs, row_count(inputs)) if options.expected else None
    gates = options.gates
    results: list[GateResult] = []
    latency: dict[str, Any] = {}
    with contextlib.ExitStack() as stack, httpx.Client() as client:
        served = [version] if options.url is None else []
        served += [baseline] if baseline is not None else []
        if served:
            progress.step("starting " + " and ".join(v.ref for v in served))
        endpoints = stack.enter_context(started([(v.ref, v.name, v.version) for v in served], client))
        if options.url is not None:
            progress.step(f"waiting for {options.url}")
            cand = Endpoint(options.url, version.name, version.version, headers=options.headers)
            cand.wait_ready(client, time.monotonic() + READY_DEADLINE_S, None)
        else:
            cand = endpoints[0]
        base = endpoints[-1] if baseline is not None else None
        if gates.regression.enabled:
            progress.step(f"regression: {row_count(inputs)} rows")
            results.append(_regression(client, gates, cand, base, inputs, labels, expected))
        if gates.performance.enabled:
            gate, latency = _performance(gates, cand, base, inputs, progress)
            results.append(gate)
        if gates.stability.enabled:
            s = gates.stability
            progress.step(f"stability: soak of {s.seconds:g} s at concurrency {s.concurrency}")
            soak = load.drive(
                cand.infer_url,
                load.bodies(inputs, gates.performance.batch),
                concurrency=s.concurrency,
                seconds=s.seconds,
                sample_rss=lambda: cand.rss_bytes(client),
                headers=cand.headers,
            )
            results.append(stability.judge(s, soak.numbers(), soak.rss))
        endpoint = cand.base_url
    result = ValidationResult(version, baseline, results, where, gates, endpoint, latency=latency)
    if options.report is not None:
        from conveyor.validate.html import write_report

        progress.step(f"writing {options.report}")
        result.report = write_report(result, options.report)
    if options.store:
        result.stored = registry.validations.record(
            version.name,
            version.version,
            passed=result.passed,
            gates=[g.to_dict() for g in results],
            baseline=baseline.ref if baseline else None,
            report=str(result.report) if result.report else None,
        )
    return result


def _regression(
    client: httpx.Client,
    gates: Gates,
    cand: Endpoint,
    base: Endpoint | None,
    inputs: Inputs,
    labels: Array | None,
    expected: dict[str, Array] | None,
) -> GateResult:
    batch = gates.regression.batch
    try:
        outputs = load.answers(client, cand.infer_url, inputs, batch, cand.headers)
        base_outputs = load.answers(client, base.infer_url, inputs, batch, base.headers) if base else None
    except (Unavailable, InvalidInput) as exc:  # the endpoint broke on valid rows: the gate fails, saying how
        return GateResult("regression", error=f"the data could not be answered: {exc.message}")
    return regression.judge(
        gates.regression, outputs, labels=labels, expected=expected, baseline=base_outputs
    )


def _performance(
    gates: Gates, cand: Endpoint, base: Endpoint | None, inputs: Inputs, progress: Progress
) -> tuple[GateResult, dict[str, Any]]:
    p = gates.performance
    payloads = load.bodies(inputs, p.batch)
    pairs = [("candidate", cand)] + ([("baseline", base)] if base is not None else [])
    progress.step(f"performance: {p.seconds:g} s at concurrency {p.concurrency}" + (" each" if base else ""))
    for _, endpoint in pairs:
        load.drive(
            endpoint.infer_url,
            payloads,
            concurrency=p.concurrency,
            seconds=WARM_UP_S,
            headers=endpoint.headers,
        )
    # In turns, so that other work on the machine weighs on both alike rather than on whichever ran while it
    # was busy.
    rounds = ROUNDS if base is not None else 1
    measured: dict[str, load.Load] = {}
    for _ in range(rounds):
        for who, endpoint in pairs:
            part = load.drive(
                endpoint.infer_url,
                payloads,
                concurrency=p.concurrency,
                seconds=p.seconds / rounds,
                headers=endpoint.headers,
            )
            measured[who] = measured[who].merge(part) if who in measured else part
    numbers = {who: m.numbers() for who, m in measured.items()}
    result = performance.judge(p, numbers["candidate"], numbers.get("baseline"))
    histograms = performance.latency_histograms(
        [t * 1000 for t in measured["candidate"].latencies],
        [t * 1000 for t in measured["baseline"].latencies] if "baseline" in measured else None,
    )
    return result, histograms


def _rows(
    version: VersionInfo, signature: Signature, options: ValidateOptions
) -> tuple[Inputs, dict[str, Any]]:
    if options.dataset is not None:
        inputs = load_inputs(options.dataset, signature, "dataset")
        source = str(options.dataset)
    else:
        drawn = draw_from_reference(version.metadata.get("reference"), signature)
        if isinstance(drawn, str):
            raise InvalidInput(f"no rows to validate {version.ref} on: give --dataset ({drawn})")
        inputs, source = drawn, f"drawn from {version.ref}'s reference statistics"
    if row_count(inputs) == 0:
        raise InvalidInput(f"dataset {options.dataset}: no rows")
    where = {
        "rows": row_count(inputs),
        "source": source,
        "labels": str(options.labels) if options.labels else None,
        "expected": str(options.expected) if options.expected else None,
    }
    return inputs, where


def _expected(path: Path, outputs: list[str], rows: int) -> dict[str, Array]:
    """The expected outputs: an .npz with an array per output to compare (by name), or an .npy for a model
    with one output; one row per data row."""
    sample = load_sample(path)
    if isinstance(sample, dict):
        arrays = dict(sample)
        unknown = sorted(set(arrays) - set(outputs))
        if unknown:
            raise InvalidInput(
                f"expected outputs {path}: {unknown[0]!r} is not an output of the model {outputs}"
            )
    elif len(outputs) == 1:
        arrays = {outputs[0]: sample}
    else:
        raise InvalidInput(
            f"expected outputs {path}: the model has outputs {outputs}; give an .npz with an array per output"
        )
    for name, arr in arrays.items():
        if len(arr) != rows:
            raise InvalidInput(f"expected outputs {path}: {name!r} has {len(arr)} rows for {rows} data rows")
    return {k: np.asarray(v) for k, v in arrays.items()}
