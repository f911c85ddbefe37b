"""``make bench``: Conveyor against its peers on this machine, same models, same load generator, same body.

    python bench/run.py [--models tiny,mlp] [--servers conveyor,lean] [--duration 5] [--concurrency 1,32]
                        [--rows 8]

Each option also reads BENCH_MODELS, BENCH_SERVERS, BENCH_DURATION, BENCH_WARMUP, BENCH_CONCURRENCY,
BENCH_ROWS, BENCH_ROUNDS, BENCH_OVERLOAD_ROUNDS, BENCH_AUTH_ROUNDS.
Every row records the CPU its server and hey spent per request; with the model's compute cost from the ceiling
run, the report says how many inferences/s this machine allows any server (bench/cpu.py).
A full run writes bench/results/latest.{json,md} and a timestamped copy under bench/results/history/;
a partial one (some models or servers) writes bench/results/partial.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import auth
import ceiling
import check
import config
import cpu
import load
import numpy as np
import observe_cost
import overload
import paired
import report
import targets
import venvs
import wire
from models import BenchModel, build
from procs import MemorySampler
from servers import ConveyorUp

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(
        prog="python bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default=env("BENCH_MODELS"), help=f"comma list of {config.MODELS}")
    ap.add_argument("--servers", default=env("BENCH_SERVERS"), help="comma list of rows or row prefixes")
    ap.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", config.DURATION_S)))
    ap.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP", config.WARMUP_S)))
    ap.add_argument("--concurrency", default=env("BENCH_CONCURRENCY", ",".join(map(str, config.CONCURRENCY))))
    ap.add_argument(
        "--rows",
        type=int,
        default=int(env("BENCH_ROWS", "1")),
        help="rows per load request (default 1: batch-1 requests); inferences/s = req/s x rows",
    )
    ap.add_argument("--no-ceiling", action="store_true", help="skip the in-process ONNX Runtime ceiling rows")
    ap.add_argument(
        "--rounds",
        type=int,
        default=int(env("BENCH_ROUNDS", "4")),
        help="rounds of the interleaved target runs (0: judge the targets on the sequential rows only)",
    )
    ap.add_argument(
        "--overload-rounds",
        type=int,
        default=int(env("BENCH_OVERLOAD_ROUNDS", "4")),
        help="rounds of the overload runs on the tiny model, c=64, queue 4 vs default (0: skip them)",
    )
    ap.add_argument(
        "--auth-rounds",
        type=int,
        default=int(env("BENCH_AUTH_ROUNDS", "4")),
        help="rounds of the authentication runs on the tiny model, c=32, `conveyor up` with a token vs "
        "the same Deployment public (0: skip them); they run when a `conveyor up` row is selected",
    )
    ap.add_argument(
        "--observe-rounds",
        type=int,
        default=int(env("BENCH_OBSERVE_ROUNDS", "4")),
        help="rounds of the metrics-and-logging cost runs on the tiny model, c=32, Conveyor's defaults vs "
        "metrics and logs off, `conveyor serve` and `conveyor up` (0: skip them)",
    )
    ap.add_argument("--results-dir", type=Path, default=BENCH / "results")
    return ap.parse_args(argv)


def _conveyor(rows: list[config.Row]) -> bool:
    return any(r.name.startswith("conveyor") for r in rows)


def _conveyor_up(rows: list[config.Row]) -> bool:
    return any(isinstance(r.server, ConveyorUp) for r in rows)


# The sections judged on pairs of servers, run for the tiny model with batch-1 requests when the selected rows
# include what they measure: results key, module, its rounds option, when.
SECTIONS: tuple[tuple[str, Any, str, Callable[[list[config.Row]], bool]], ...] = (
    ("overload", overload, "overload_rounds", _conveyor),
    ("auth", auth, "auth_rounds", _conveyor_up),
    ("observe", observe_cost, "observe_rounds", _conveyor),
)


def bench_row(
    row: config.Row, model: BenchModel, args: argparse.Namespace, body: Path
) -> list[dict[str, Any]]:
    """Start the row's server for one model, check it, load it at each concurrency, check again, stop it."""
    server = row.server
    base: dict[str, Any] = {
        "model": model.name,
        "server": row.name,
        "protocol": row.protocol,
        "note": server.note,
    }
    if reason := server.unavailable():
        say(f"{model.name} × {row.name}: skipped, {reason}")
        return [{**base, "status": "skipped", "note": f"skipped: {reason}"}]
    workdir = WORK / "run" / f"{row.name}-{model.name}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    try:
        server.start(model, workdir, WORK / "logs" / f"{row.name}-{model.name}.log")
        assert server.proc is not None
        server_cpu = cpu.TreeCpu(server.proc.pid)
        with MemorySampler(server.proc.pid) as memory:
            cold = server.ready(model)
            url = server.url(model)
            auth = server.auth_headers()
            before = check.check(url, server.wire_format, model, auth=auth)
            say(f"{model.name} × {row.name}: ready in {cold:.1f} s at {url}; check {_check_text(before)}")
            headers = wire.headers(server.wire_format, body.read_bytes()) | auth
            for c in args.concurrency:
                load.run(url, body, c, args.warmup, headers=headers)
                memory.reset()
                server_cpu.start()
                result = load.run(url, body, c, args.duration, headers=headers)
                server_cpu_us = cpu.per_request_us(server_cpu.stop(), result.requests)
                client_cpu_us = cpu.per_request_us(result.client_cpu_s, result.requests)
                memory.sample()
                after = check.check(url, server.wire_format, model, auth=auth)
                checks = check.CheckResult()
                if not rows:
                    checks.add(before)
                checks.add(after)
                say(
                    f"{model.name} × {row.name} c={c}: {result.rps:,.0f} req/s, p50 {_ms(result.p50_ms)}, "
                    f"p99 {_ms(result.p99_ms)}, {result.errors} errors, peak RSS {memory.peak_mb:.0f} MB, "
                    f"CPU per request: server {_us(server_cpu_us)}, hey {_us(client_cpu_us)}; "
                    f"check {_check_text(after)}"
                )
                rows.append(
                    {
                        **base,
                        "status": "ok",
                        "concurrency": c,
                        "rps": result.rps,
                        "p50_ms": result.p50_ms,
                        "p99_ms": result.p99_ms,
                        "requests": result.requests,
                        "errors": result.errors + checks.errors,
                        "wrong": checks.wrong,
                        "load_status": result.status,
                        "load_error_sample": result.error_sample,
                        "checks_sent": checks.sent,
                        "check_problem": checks.first_problem,
                        "peak_rss_mb": round(memory.peak_mb, 1),
                        "processes": len(memory.seen),
                        "server_cpu_us": server_cpu_us,
                        "client_cpu_us": client_cpu_us,
                        "load_average_1m": round(
                            os.getloadavg()[0], 2
                        ),  # other work on the machine shows here
                        "cold_start_s": round(cold, 2) if not rows else None,
                    }
                )
    except Exception as exc:  # one failing server must not stop the bench: record why and go on
        say(f"{model.name} × {row.name}: FAILED: {exc}")
        rows.append({**base, "status": "failed", "note": f"failed: {str(exc)[:300]}"})
    finally:
        killed = server.stop()
        if killed:
            say(f"{model.name} × {row.name}: killed leftover pids {killed}")
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} µs"


def _check_text(result: check.CheckResult) -> str:
    text = f"{result.sent} sent, {result.errors} errors, {result.wrong} wrong"
    return text + (f" ({result.first_problem})" if result.first_problem else "")


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    args.concurrency = [int(c) for c in _csv(args.concurrency) or []]
    if args.rows < 1:
        raise SystemExit(f"--rows must be at least 1, got {args.rows}")
    model_names = _csv(args.models) or config.MODELS
    rows = config.select(_csv(args.servers))
    partial = set(model_names) != set(config.MODELS) or len(rows) != len(config.ROWS) or args.rows != 1
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install -y hey (make bench does it)")

    meta: dict[str, Any] = {
        "machine": report.machine(),
        "conveyor_settings": report.conveyor_settings(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rows_per_request": args.rows,
    }
    say(
        f"models {model_names}; servers {[r.name for r in rows]}; "
        f"c={args.concurrency}; {args.duration:g} s runs"
    )
    peers = sorted({r.server.peer for r in rows if r.server.peer and not r.server.unavailable()})
    for peer in peers:
        venvs.ensure(peer)
    meta["peer_versions"] = {
        k: v for r in rows if r.server.peer in peers for k, v in r.server.versions().items()
    }

    results: list[dict[str, Any]] = []
    interleaved: list[dict[str, Any]] = []
    for name in model_names:
        say(f"model {name}: building")
        model = build(name, WORK / "models")
        bodies = {}
        for fmt in {r.server.wire_format for r in rows}:
            bodies[fmt] = WORK / "bodies" / f"{name}.{fmt}.{'bin' if fmt == wire.V2_BINARY else 'json'}"
            bodies[fmt].parent.mkdir(parents=True, exist_ok=True)
            load_input = np.repeat(model.load_input, args.rows, axis=0)
            bodies[fmt].write_bytes(wire.encode(fmt, model.input_name, load_input))
        if not args.no_ceiling:
            session_mb = ceiling.session_rss_mb(model)
            say(f"{name}: a bare process holding one ONNX Runtime session peaks at {session_mb:.0f} MB RSS")
            for batch in (1, 32):
                measured = ceiling.measure(model, batch)
                say(
                    f"{name}: ONNX Runtime in-process, batch {batch}: {measured.rate:,.0f} inferences/s, "
                    f"{measured.cpu_us:.1f} µs CPU each"
                )
                results.append(
                    {
                        "model": name,
                        "server": "ORT in-process",
                        "protocol": "-",
                        "concurrency": f"b{batch}",
                        "rps": measured.rate,
                        "cpu_us": measured.cpu_us,
                        "status": "ok",
                        "peak_rss_mb": round(session_mb, 1),
                        "note": f"ceiling: one session, batch {batch}, inferences/s; RSS: process + session",
                    }
                )
        for row in rows:
            results.extend(bench_row(row, model, args, bodies[row.server.wire_format]))
        if args.rounds > 0 and args.rows == 1:
            try:
                interleaved.extend(paired.measure(model, rows, bodies, WORK, say, rounds=args.rounds))
            except Exception as exc:  # the sequential rows still stand
                say(f"{name}: interleaved target runs FAILED: {exc}")
        if name != "tiny" or args.rows != 1:
            continue
        json_body = WORK / "bodies" / f"{name}.{wire.V2}.json"
        json_body.write_bytes(wire.encode(wire.V2, model.input_name, model.load_input))
        for key, section, rounds_flag, wanted in SECTIONS:
            rounds = getattr(args, rounds_flag)
            if rounds > 0 and wanted(rows):
                try:
                    meta[key] = section.measure(model, json_body, WORK, say, rounds=rounds)
                except Exception as exc:  # the other rows still stand
                    say(f"{name}: {key} runs FAILED: {exc}")

    meta["total_s"] = round(time.monotonic() - started, 1)
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["bounds"] = [b.as_dict() for b in cpu.bounds(results, args.rows, os.cpu_count() or 1)]
    meta["targets"] = targets.judge_all(results) if args.rows == 1 else []  # the targets are batch-1
    meta["interleaved"] = interleaved
    meta["targets_interleaved"] = targets.judge_all(interleaved) if interleaved else []
    report.print_table(results)
    targets.print_table(meta["targets"])
    if meta["targets_interleaved"]:
        targets.print_table(meta["targets_interleaved"], interleaved=args.rounds)
    report.print_bounds(meta["bounds"])
    for key, section, _, _ in SECTIONS:
        if meta.get(key):
            section.print_tables(meta[key])
    paths = report.write(args.results_dir, meta, results, partial=partial)
    if not partial and report.update_docs(report.DOCS, meta, results):
        paths.append(report.DOCS)
    say(f"total {meta['total_s'] / 60:.1f} min; wrote {', '.join(str(p) for p in paths)}")
    bad = [r for r in results if r.get("errors") or r.get("wrong")]
    bad += [r for r in meta.get("auth", {}).get("rows", []) if r["errors"] or r["wrong"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
