"""The results: the machine they came from, one table (terminal and Markdown), JSON + Markdown files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import auth
import load
import observe_cost
import overload
import targets

COLUMNS = [
    ("model", "model"),
    ("server", "server"),
    ("protocol", "protocol"),
    ("concurrency", "c"),
    ("rps", "req/s"),
    ("mean_ms", "mean ms"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("errors", "errors"),
    ("wrong", "wrong"),
    ("peak_rss_mb", "peak RSS MB"),
    ("server_cpu_us", "server CPU µs/req"),
    ("client_cpu_us", "hey CPU µs/req"),
    ("cold_start_s", "cold start s"),
    ("note", "note"),
]
NUMERIC = ("concurrency", "rps", "mean_ms", "p50_ms", "p99_ms", "server_cpu_us", "client_cpu_us")


def _run(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    import numpy
    import onnxruntime

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(ln.split()[1])
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal")
    )
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "hey": _run("dpkg-query", "-W", "-f=${Version}", "hey"),
        "conveyor_commit": _run("git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"),
        # uncommitted changes under src/ measured along with the commit (others land work concurrently)
        "conveyor_src_dirty": bool(
            _run("git", "-C", str(Path(__file__).parent), "status", "--porcelain", "--", "../src")
        ),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def conveyor_settings() -> dict[str, Any]:
    """The Conveyor serving defaults the direct and gateway rows ran with."""
    from conveyor.settings import Settings

    fields = ("max_batch_size", "max_queue_delay_us", "max_queue_size", "intra_op_threads")
    defaults = Settings()
    return {f: getattr(defaults, f) for f in fields if hasattr(defaults, f)}


def _cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if key == "rps":
        return f"{value:,.0f}"
    if key in ("p50_ms", "p99_ms"):
        return f"{value:.2f}"
    if key == "mean_ms":
        return f"{value:.3f}"
    if key in ("peak_rss_mb", "server_cpu_us", "client_cpu_us"):
        return f"{value:,.0f}"
    if key == "cold_start_s":
        return f"{value:.1f}"
    return str(value)


def cells(row: dict[str, Any]) -> list[str]:
    return [_cell(key, load.mean_ms(row) if key == "mean_ms" else row.get(key)) for key, _ in COLUMNS]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if k in NUMERIC else "---" for k, _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m = meta["machine"]
    dirty = " + uncommitted src/ changes" if m.get("conveyor_src_dirty") else ""
    settings = ", ".join(f"{k}={v}" for k, v in meta.get("conveyor_settings", {}).items())
    peers = ", ".join(f"{k} {v}" for k, v in sorted(meta["peer_versions"].items()) if v)
    lines = [
        f"# Benchmark results, {m['date']}",
        "",
        f"- Run: {m['date']}, {meta['total_s'] / 60:.1f} min in all.",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
        f"load average at start {m['load_average_at_start']}, at end {meta.get('load_average_at_end')}.",
        f"- Software: Python {m['python']}, ONNX Runtime {m['onnxruntime']}, hey {m['hey']}; "
        f"Conveyor {m['conveyor_commit']}{dirty}" + (f" ({settings})" if settings else "") + f"; {peers}.",
        f"- Load: hey, {meta['duration_s']:g} s per run after a {meta['warmup_s']:g} s warmup, "
        f"batch-{meta.get('rows_per_request', 1)} requests.",
        "- ORT in-process rows are the ceiling: one session called in a loop, inferences/s in the req/s "
        "column (c = batch size).",
        "- mean ms: concurrency / req/s (Little's law, hey's workers being closed loops); p50 and p99 come "
        "from hey, which prints latencies at 0.1 ms resolution.",
        "- CPU µs/req: user + system CPU of the server's processes and of hey during the run, per request.",
        "",
        markdown_table(rows),
        "",
    ]
    if meta.get("targets"):
        lines += [targets.TITLE, "", targets.TEXT, "", targets.markdown_table(meta["targets"]), ""]
    if meta.get("targets_interleaved"):
        lines += [targets.INTERLEAVED_TITLE, "", targets.INTERLEAVED_TEXT, ""]
        lines += [targets.markdown_table(meta["targets_interleaved"]), ""]
        lines += ["Rounds (req/s each): " + "; ".join(_rounds(r) for r in meta.get("interleaved", [])), ""]
    for key, section in (("overload", overload), ("auth", auth), ("observe", observe_cost)):
        if meta.get(key):
            lines += section.markdown(meta[key])
    if meta.get("bounds"):
        lines += [BOUNDS_TITLE, "", BOUNDS_TEXT, "", markdown_bounds(meta["bounds"]), ""]
    return "\n".join(lines)


def _rounds(row: dict[str, Any]) -> str:
    each = ", ".join(f"{x:,.0f}" for x in row.get("rps_each", []))
    return f"{row['model']} {row['server']} c={row['concurrency']}: {each}"


BOUNDS_TITLE = "## What this machine allows"
BOUNDS_TEXT = (
    "hey runs on the same cores as the server. A request costs at least the model's compute "
    "(ONNX Runtime CPU per inference at batch 32, from the ceiling run) plus hey's own CPU per request "
    "(the lowest any row of the same protocol measured at the top concurrency), so cores / (compute + hey) "
    "inferences/s is the most any server could answer here, even one that spent no CPU itself. One line per "
    "protocol, with Conveyor's fastest row of that protocol."
)
BOUND_COLUMNS = [
    "model",
    "protocol",
    "ceiling b32 inf/s",
    "compute µs/inf",
    "hey µs/req",
    "any server at most, inf/s",
    "= of ceiling",
    "best Conveyor c=top",
    "of ceiling",
    "of the bound",
]


def bound_cells(b: dict[str, Any]) -> list[str]:
    limit, ceiling, best = b["limit"], b["ceiling"], b.get("best")
    return [
        b["model"],
        b.get("protocol", "-"),
        f"{ceiling:,.0f}",
        f"{b['compute_us']:.1f}",
        f"{b['client_us']:.0f}",
        f"{limit:,.0f}",
        f"{limit / ceiling:.0%}",
        f"{best:,.0f} ({b['best_server']})" if best else "-",
        f"{best / ceiling:.0%}" if best else "-",
        f"{best / limit:.0%}" if best else "-",
    ]


def markdown_bounds(bounds: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(BOUND_COLUMNS) + " |"
    rule = "|---|---|" + "---:|" * (len(BOUND_COLUMNS) - 2)
    body = ["| " + " | ".join(bound_cells(b)) + " |" for b in bounds]
    return "\n".join([head, rule, *body])


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Conveyor vs peers (same machine, same models, same load generator)")
    for key, title in COLUMNS:
        table.add_column(title, justify="right" if key in NUMERIC else "left")
    for r in rows:
        table.add_row(*cells(r))
    Console(width=240).print(table)


def print_bounds(bounds: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    if not bounds:
        return
    table = Table(title="What this machine allows (hey on the same cores)", caption=BOUNDS_TEXT)
    for i, title in enumerate(BOUND_COLUMNS):
        table.add_column(title, justify="left" if i < 2 else "right")
    for b in bounds:
        table.add_row(*bound_cells(b))
    Console(width=240).print(table)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
DOCS_START = "<!-- bench:latest:start (written by bench/run.py) -->"
DOCS_END = "<!-- bench:latest:end -->"


def update_docs(doc: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Replace the text between the markers in ``doc`` with the results; False when there are no markers."""
    if not doc.exists():
        return False
    text = doc.read_text()
    head, start, rest = text.partition(DOCS_START)
    _, end, tail = rest.partition(DOCS_END)
    if not start or not end:
        return False
    body = markdown(meta, rows).split("\n", 2)[2]  # without the title line
    body = body.replace("\n## ", "\n### ")  # sections of the results sit under the doc's own section
    doc.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}")
    return True


def write(results_dir: Path, meta: dict[str, Any], rows: list[dict[str, Any]], partial: bool) -> list[Path]:
    """latest.{json,md} plus history/<date>.json for a full run; partial.{json,md} for a subset."""
    doc = json.dumps({**meta, "partial": partial, "rows": rows}, indent=2) + "\n"
    stem = "partial" if partial else "latest"
    paths = [results_dir / f"{stem}.json", results_dir / f"{stem}.md"]
    if not partial:
        stamp = meta["machine"]["date"].replace(":", "").replace("+0000", "Z")
        paths.append(results_dir / "history" / f"{stamp}.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(meta, rows) if path.suffix == ".md" else doc)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Render a results JSON as Markdown again (after a change to the report's format): the .md next to it,
    and for a full run the latest results in docs/benchmarks.md."""
    import argparse

    ap = argparse.ArgumentParser(prog="python bench/report.py", description=main.__doc__)
    ap.add_argument("results", type=Path, help="a results JSON, e.g. bench/results/latest.json")
    args = ap.parse_args(argv)
    doc = json.loads(args.results.read_text())
    rows = doc.pop("rows")
    out = args.results.with_suffix(".md")
    out.write_text(markdown(doc, rows))
    print(f"wrote {out}")
    if not doc.get("partial") and update_docs(DOCS, doc, rows):
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
