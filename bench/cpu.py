"""CPU accounting: what a load run cost the server and the load generator, and what the machine allows.

Every row records the CPU time its server's process tree and ``hey`` spent per request. With the ONNX Runtime
CPU time per inference from the ceiling run, that gives an upper bound no server can pass on this machine:
with ``hey`` on the same cores, each batch-1 request costs at least the model's compute plus hey's own work,
so ``cores / (compute + hey)`` requests per second is the most any server could answer, even one that spent
nothing itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of one live process in seconds; 0 for a gone one."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class TreeCpu:
    """CPU seconds a process tree spent between ``start()`` and ``stop()``, per pid so that processes that
    start during the window count from zero (ones that exit during it lose their share: rare here)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._start: dict[int, float] = {}

    def start(self) -> None:
        self._start = {pid: process_cpu_s(pid) for pid in procs.tree(self.root)}

    def stop(self) -> float:
        now = {pid: process_cpu_s(pid) for pid in procs.tree(self.root)}
        return sum(max(0.0, cpu - self._start.get(pid, 0.0)) for pid, cpu in now.items())


def per_request_us(cpu_s: float | None, requests: int) -> float | None:
    return None if cpu_s is None or requests <= 0 else cpu_s / requests * 1e6


@dataclass
class Bound:
    """The most a server could answer here for one model and one protocol, from measured CPU costs."""

    model: str
    protocol: str  # the wire protocol of the rows this bound and its best Conveyor row come from
    cores: int
    ceiling: float  # inferences/s of the batch-32 in-process run
    compute_us: float  # ONNX Runtime CPU per inference at batch 32
    client_us: (
        float  # hey's CPU per request, the lowest any row of this protocol measured at the top concurrency
    )
    rows_per_request: int
    best_server: str | None
    best: float | None  # inferences/s of the fastest Conveyor row of this protocol at the top concurrency

    @property
    def limit(self) -> float:
        """Inferences/s of a server that costs nothing: the cores split between compute and hey."""
        per_inference = self.compute_us + self.client_us / self.rows_per_request
        return self.cores * 1e6 / per_inference

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "protocol": self.protocol,
            "cores": self.cores,
            "ceiling": self.ceiling,
            "compute_us": self.compute_us,
            "client_us": self.client_us,
            "rows_per_request": self.rows_per_request,
            "limit": self.limit,
            "best_server": self.best_server,
            "best": self.best,
        }


def bounds(rows: list[dict[str, Any]], rows_per_request: int, cores: int) -> list[Bound]:
    """One Bound per model and protocol that has a Conveyor row loaded at the top concurrency, given a
    batch-32 ceiling with its CPU cost. Per protocol, because hey's cost per request and the server's work
    both depend on the body: a binary row's best is never set against a JSON row's bound, nor the reverse."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and r.get("status") == "ok"]
        ceiling = next((r for r in mine if r.get("concurrency") == "b32" and r.get("cpu_us")), None)
        loaded = [r for r in mine if isinstance(r.get("concurrency"), int) and r.get("client_cpu_us")]
        if ceiling is None or not loaded:
            continue
        top = max(r["concurrency"] for r in loaded)
        at_top = [r for r in loaded if r["concurrency"] == top]
        protocols = dict.fromkeys(
            r.get("protocol", "-") for r in at_top if r["server"].startswith("conveyor")
        )
        for protocol in protocols:
            same = [r for r in at_top if r.get("protocol", "-") == protocol]
            fastest = max(
                (r for r in same if r["server"].startswith("conveyor")), key=lambda r: float(r["rps"])
            )
            out.append(
                Bound(
                    model=model,
                    protocol=protocol,
                    cores=cores,
                    ceiling=ceiling["rps"],
                    compute_us=ceiling["cpu_us"],
                    client_us=min(r["client_cpu_us"] for r in same),
                    rows_per_request=rows_per_request,
                    best_server=fastest["server"],
                    best=fastest["rps"] * rows_per_request,
                )
            )
    return out
