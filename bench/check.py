"""Correctness: distinct requests against a running server, compared with a direct ONNX Runtime run."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import numpy as np
import wire
from models import BenchModel

TOLERANCE = 1e-4


@dataclass
class CheckResult:
    sent: int = 0
    errors: int = 0  # transport failures and non-200 answers
    wrong: int = 0  # 200 answers whose outputs differ from ONNX Runtime's
    first_problem: str = ""

    def add(self, other: CheckResult) -> None:
        self.sent += other.sent
        self.errors += other.errors
        self.wrong += other.wrong
        self.first_problem = self.first_problem or other.first_problem


def mismatch(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> str:
    """Empty when every expected output is present and equal within TOLERANCE, else what differs."""
    for name, want in expected.items():
        if name not in got:
            return f"output {name!r} missing (got {sorted(got)})"
        have = got[name]
        if have.size != want.size:
            return f"output {name!r}: {have.size} values, expected {want.size}"
        have = have.reshape(want.shape)
        if want.dtype.kind in "iub":
            if not np.array_equal(have, want):
                return f"output {name!r}: {have.ravel()[:4]} != {want.ravel()[:4]}"
        elif not np.allclose(have.astype(np.float64), want, atol=TOLERANCE, rtol=0):
            diff = float(np.max(np.abs(have.astype(np.float64) - want)))
            return f"output {name!r}: max abs diff {diff:.2e} > {TOLERANCE}"
    return ""


def check_one(
    client: httpx.Client,
    url: str,
    wire_format: str,
    model: BenchModel,
    i: int,
    auth: dict[str, str] | None = None,
) -> str:
    """Send sample ``i`` (with the ``auth`` headers, if any); empty string when the answer is right, else
    'error: …' or 'wrong: …'."""
    body = wire.encode(wire_format, model.input_name, model.samples[i])
    try:
        resp = client.post(url, content=body, headers=wire.headers(wire_format, body) | (auth or {}))
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}: {exc}"
    if resp.status_code != 200:
        return f"error: HTTP {resp.status_code}: {resp.text[:200]}"
    try:
        got = wire.decode(wire_format, resp.content)
    except Exception as exc:  # any unparseable answer is a wrong answer
        return f"wrong: unparseable response ({exc}): {resp.text[:200]}"
    problem = mismatch(model.expected[i], got)
    return f"wrong: {problem}" if problem else ""


def check(
    url: str,
    wire_format: str,
    model: BenchModel,
    timeout_s: float = 30.0,
    auth: dict[str, str] | None = None,
) -> CheckResult:
    """Send every sample once (with the ``auth`` headers, if any) and count errors and wrong answers."""
    result = CheckResult()
    with httpx.Client(timeout=timeout_s) as client:
        for i in range(len(model.samples)):
            problem = check_one(client, url, wire_format, model, i, auth)
            result.sent += 1
            if problem.startswith("error"):
                result.errors += 1
            elif problem:
                result.wrong += 1
            result.first_problem = result.first_problem or problem
    return result
