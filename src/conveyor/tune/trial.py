"""One trial of ``conveyor tune``: the real serving stack (``conveyor serve``) started with one setting on a
free loopback port, waited for until ready, loaded, and stopped by its pid, whatever happened."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx

from conveyor.loadgen import Load, LoadResult, percentile_ms, run_load
from conveyor.serve_process import HOST, ServeProcess
from conveyor.tune.search import Row, Setting, Trial


@dataclass
class Server:
    """A started ``conveyor serve``: its port once ready, else why it is not (``failure``)."""

    setting: Setting
    process: ServeProcess
    port: int | None = None
    failure: str | None = None

    def died(self) -> str | None:
        code = self.process.exit_code()
        return None if code is None else f"the server exited ({code}) under load: {self.process.last_line()}"


@contextlib.contextmanager
def serving(ref: str, setting: Setting, load: Load, placement: str) -> Iterator[Server]:
    """``conveyor serve ref`` with ``setting``, waited for until ready (or its failure said), and stopped by
    its pid on leaving, whatever happened."""
    s = setting
    args = [
        ref,
        "--replicas",
        str(s.replicas),
        "--placement",
        placement,
        "--max-batch-size",
        str(s.max_batch_size),
        "--max-queue-delay-us",
        str(s.max_queue_delay_us),
    ]
    # Replicas read their threads from the environment (targets/serve_stack.py passes the gateway's
    # settings on); no log file per trial in the user's log directory.
    env = {"CONVEYOR_INTRA_OP_THREADS": str(s.threads), "CONVEYOR_LOG_TO_FILE": "false"}
    process = ServeProcess(args, env)
    server = Server(setting, process)
    try:
        ready = _wait_ready(process, load.start_timeout_s)
        server.port, server.failure = (None, ready) if isinstance(ready, str) else (ready, None)
        yield server
    finally:
        process.stop(load.stop_timeout_s)


def infer_path(ref: str) -> str:
    name, _, version = ref.partition(":")
    return f"/v2/models/{name}/versions/{version}/infer"


def run_trial(ref: str, trial: Trial, load: Load, placement: str = "auto") -> list[Row]:
    """Serve ``ref`` as ``trial.setting`` says, load it, and stop it: the row of what was measured, or of
    why nothing could be (``failure``: the server did not start or died, with its last output line). A
    confirm trial (``trial.against`` set) is ``run_paired``."""
    if trial.against is not None:
        return run_paired(ref, trial, load, placement)
    started = time.perf_counter()
    with serving(ref, trial.setting, load, placement) as server:
        if server.port is None:
            return [
                Row(trial.phase, trial.setting, failure=server.failure, wall_s=time.perf_counter() - started)
            ]
        result = run_load(HOST, server.port, infer_path(ref), load)
        died = server.died()
    return [_row(trial.phase, trial.setting, [result], died, time.perf_counter() - started)]


def run_paired(ref: str, trial: Trial, load: Load, placement: str = "auto", rounds: int = 8) -> list[Row]:
    """Both settings of a confirm trial served at once and loaded in turn, ``rounds`` short runs each in
    alternating order (AB, BA, ...), twice a trial's duration in all (this is the measurement that
    decides), so a change in the machine's load lands on both: each row's req/s is the median of its runs,
    its latencies those of all its runs."""
    assert trial.against is not None
    started = time.perf_counter()
    pair = (trial.setting, trial.against)
    runs: dict[Setting, list[LoadResult]] = {s: [] for s in pair}
    died: dict[Setting, str | None] = dict.fromkeys(pair)
    short = replace(load, warmup_s=min(load.warmup_s, 0.25), duration_s=2 * load.duration_s / rounds)
    with serving(ref, pair[0], load, placement) as a, serving(ref, pair[1], load, placement) as b:
        servers = (a, b)
        if all(x.port is not None for x in servers):
            for i in range(rounds):
                for server in servers if i % 2 == 0 else servers[::-1]:
                    assert server.port is not None
                    # each server's first run warms it up for as long as a trial does
                    this = replace(short, warmup_s=load.warmup_s) if i == 0 else short
                    runs[server.setting].append(run_load(HOST, server.port, infer_path(ref), this))
        for x in servers:
            died[x.setting] = x.failure or x.died()
    wall = (time.perf_counter() - started) / 2
    return [_row(trial.phase, s, runs[s], died[s], wall) for s in pair]


def _row(phase: str, setting: Setting, results: list[LoadResult], failure: str | None, wall_s: float) -> Row:
    if not results:
        return Row(phase, setting, failure=failure or "not measured", wall_s=wall_s)
    latencies = sorted(x for r in results for x in r.latencies)
    errors = sum(r.errors for r in results)
    sample = next((r.error_sample for r in results if r.error_sample), "")
    cpu = [r.client_cpu_us for r in results if r.client_cpu_us is not None]
    return Row(
        phase,
        setting,
        rps=statistics.median(r.rps for r in results),
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        requests=len(latencies),
        errors=errors,
        failure=failure or (f"errors: {sample}" if sample else None),
        wall_s=wall_s,
        client_cpu_us=statistics.median(cpu) if cpu else None,
        runs_rps=tuple(r.rps for r in results) if len(results) > 1 else (),
    )


def _wait_ready(process: ServeProcess, timeout_s: float) -> int | str:
    """The port once the server announced it and says every model can answer; else why not (it exited,
    or was not ready in time)."""
    deadline = time.monotonic() + timeout_s
    port: int | None = None
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            code = process.exit_code()
            if code is not None:
                return f"the server exited ({code}) before it was ready: {process.last_line()}"
            if port is None:
                url = process.url()
                port = int(url.rsplit(":", 1)[1]) if url else None
            if port is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://{HOST}:{port}/v2/health/ready").status_code == 200:
                        return port
            time.sleep(0.1)
    return f"not ready within {timeout_s:g} s"
