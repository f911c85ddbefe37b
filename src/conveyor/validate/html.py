"""The validation report as one self-contained HTML file: inline CSS and SVG charts drawn here (no script,
no font or stylesheet fetched), so it opens offline and can be archived with a build: the verdict, every
check, the latency histogram, the drift distribution, baseline vs candidate, memory over the soak."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import disk_full_as_error
from conveyor.files import replacing
from conveyor.validate.gates import dump_gates

if TYPE_CHECKING:
    from conveyor.validate.validator import ValidationResult

W, H, PAD = 640, 240, 72
CANDIDATE, BASELINE = "#2563eb", "#9ca3af"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#111;padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
.verdict{display:inline-block;padding:.2rem .7rem;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#15803d}.fail{background:#b91c1c}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.failed td{background:#fef2f2}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:1rem}
figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:.5rem}figcaption{font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#374151}.none{color:#6b7280}
pre{background:#f9fafb;padding:.6rem;border:1px solid #e5e7eb;overflow:auto}
.key span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:middle}
"""


def write_report(result: ValidationResult, path: Path) -> Path:
    """Write the report to ``path`` whole (a temp file renamed over it); the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_full_as_error(f"report {path}"), replacing(path, f"report {path}") as f:
        f.write(render(result).encode())
    return path


def render(result: ValidationResult) -> str:
    v, b = result.version, result.baseline
    verdict = (
        '<span class="verdict pass">PASSED</span>'
        if result.passed
        else ('<span class="verdict fail">FAILED</span>')
    )
    gates = {g.gate: g for g in result.gates}
    rows = [f"<tr><th>version</th><td>{escape(v.ref)}</td></tr>"]
    rows.append(f"<tr><th>baseline</th><td>{escape(b.ref) if b else '-'}</td></tr>")
    rows.append(f"<tr><th>endpoint</th><td>{escape(result.endpoint)}</td></tr>")
    data = result.data
    rows.append(f"<tr><th>data</th><td>{data['rows']} rows of {escape(str(data['source']))}</td></tr>")
    for key in ("labels", "expected"):
        if data.get(key):
            rows.append(f"<tr><th>{key}</th><td>{escape(str(data[key]))}</td></tr>")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows.append(f"<tr><th>run</th><td>{when}</td></tr>")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>validate {escape(v.ref)}: {'passed' if result.passed else 'failed'}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>conveyor validate {escape(v.ref)} {verdict}</h1>",
        f'<table class="facts">{"".join(rows)}</table>',
        "<h2>Gates</h2>",
        _checks_table(result),
        '<h2>Charts</h2><div class="charts">',
        _figure("Latency (ms, log scale)", "chart-latency", _latency_chart(result.latency)),
        _figure("Output drift per row (largest |difference|)", "chart-drift", _drift_chart(gates)),
        _figure("Baseline vs candidate", "chart-compare", _compare_chart(gates)),
        _figure("Server resident memory during the soak (MiB)", "chart-memory", _memory_chart(gates)),
        "</div>",
        "<h2>Gates file in effect</h2>",
        f"<pre>{escape(dump_gates(result.spec))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _checks_table(result: ValidationResult) -> str:
    head = (
        "<tr><th>gate</th><th>check</th><th>candidate</th><th>baseline</th><th>limit</th><th>result</th></tr>"
    )
    rows = [head]
    for g in result.gates:
        if g.error is not None:
            rows.append(
                f'<tr class="failed"><td>{g.gate}</td><td colspan="4">{escape(g.error)}</td>'
                "<td>fail</td></tr>"
            )
        for c in g.checks:
            cls = "" if c.passed else ' class="failed"'
            limit = f"{'≤' if c.op == '<=' else '≥'} {_num(c.limit)} {escape(c.unit)}"
            rows.append(
                f"<tr{cls}><td>{g.gate}</td><td>{escape(c.name)}"
                f"{' <small>(' + escape(c.note) + ')</small>' if c.note else ''}</td>"
                f'<td class="num">{_num(c.value)}</td><td class="num">{_num(c.baseline)}</td>'
                f'<td class="num">{limit}</td><td>{"pass" if c.passed else "<b>fail</b>"}</td></tr>'
            )
    return f"<table>{''.join(rows)}</table>"


def _figure(caption: str, chart_id: str, svg: str | None) -> str:
    body = svg if svg is not None else '<p class="none">not measured in this run</p>'
    return f'<figure id="{chart_id}"><figcaption>{escape(caption)}</figcaption>{body}</figure>'


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def _svg(inner: list[str], kind: str, **data: Any) -> str:
    attrs = "".join(f' data-{k}="{escape(str(v))}"' for k, v in data.items())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" '
        f'data-chart="{kind}"{attrs}>' + "".join(inner) + "</svg>"
    )


def _axes(x_labels: list[tuple[float, str]], y_max: float, y_unit: str = "", y_min: float = 0.0) -> list[str]:
    """The plot's frame, x tick labels at (0..1, text) and the y scale's ends."""
    x0, y0, x1, y1 = PAD, H - PAD + 14, W - 10, 10
    out = [
        f'<line x1="{x0}" y1="{y0 - 14}" x2="{x1}" y2="{y0 - 14}" stroke="#9ca3af"/>',
        f'<line x1="{x0}" y1="{y1}" x2="{x0}" y2="{y0 - 14}" stroke="#9ca3af"/>',
        f'<text x="{x0 - 4}" y="{y1 + 8}" text-anchor="end">{escape(_num(y_max))}{escape(y_unit)}</text>',
        f'<text x="{x0 - 4}" y="{y0 - 14}" text-anchor="end">{escape(_num(y_min))}</text>',
    ]
    for frac, text in x_labels:
        x = x0 + frac * (x1 - x0)
        out.append(f'<text x="{x:.1f}" y="{y0 + 2}" text-anchor="middle">{escape(text)}</text>')
    return out


def _bars(series: list[tuple[str, list[int] | list[float], str]], y_max: float) -> list[str]:
    """Grouped bars: one group per bin, one bar per series in it."""
    x0, x1, top, bottom = PAD, W - 10, 10, H - PAD
    n = max(len(s[1]) for s in series)
    group = (x1 - x0) / max(n, 1)
    width = group * 0.85 / len(series)
    out = []
    for k, (name, values, colour) in enumerate(series):
        for i, value in enumerate(values):
            h = 0 if y_max <= 0 else (bottom - top) * float(value) / y_max
            x = x0 + i * group + group * 0.075 + k * width
            out.append(
                f'<rect class="bar" data-series="{name}" x="{x:.1f}" y="{bottom - h:.1f}" '
                f'width="{width:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(name)}: {value}</title></rect>'
            )
    return out


def _key(series: list[tuple[str, str]]) -> str:
    spans = "".join(f'<span style="background:{c}"></span>{escape(n)}' for n, c in series)
    return f'<div class="key">{spans}</div>'


def _latency_chart(latency: dict[str, Any]) -> str | None:
    edges = latency.get("edges") or []
    if not edges:
        return None
    series: list[tuple[str, list[int] | list[float], str]] = [("candidate", latency["candidate"], CANDIDATE)]
    if latency.get("baseline") is not None:
        series.append(("baseline", latency["baseline"], BASELINE))
    y_max = max(max(s[1], default=0) for s in series) or 1
    n = len(edges) - 1
    labels = [(i / n, f"{edges[i]:.3g}") for i in range(0, n + 1, max(1, n // 5))]
    svg = _svg(_axes(labels, y_max, " req") + _bars(series, y_max), "latency", bins=n)
    return svg + _key([(s[0], s[2]) for s in series])


def _drift_chart(gates: dict[str, Any]) -> str | None:
    g = gates.get("regression")
    if g is None:
        return None
    hist, against = g.numbers.get("drift_rows_vs_baseline"), "baseline"
    if not hist or not hist.get("counts"):
        hist, against = g.numbers.get("drift_rows_vs_expected"), "expected"
    if not hist or not hist.get("counts"):
        return None
    edges, counts = hist["edges"], hist["counts"]
    n = len(counts)
    labels = [(i / n, f"{edges[i]:.2g}") for i in range(0, n + 1, max(1, n // 5))]
    y_max = max(counts) or 1
    series: list[tuple[str, list[int] | list[float], str]] = [(f"rows vs {against}", counts, CANDIDATE)]
    svg = _svg(
        _axes(labels, y_max, " rows") + _bars(series, y_max), "drift", against=against, rows=hist["rows"]
    )
    return svg + _key([(f"candidate vs {against}: rows by largest |difference|", CANDIDATE)])


def _compare_chart(gates: dict[str, Any]) -> str | None:
    """One pair of bars per measure, each pair scaled to its larger value (the numbers are on the bars)."""
    pairs: list[tuple[str, float | None, float | None]] = []
    perf = gates.get("performance")
    if perf is not None:
        cand, base = perf.numbers.get("candidate") or {}, perf.numbers.get("baseline") or {}
        for key, name in (("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("throughput", "req/s")):
            pairs.append((name, cand.get(key), base.get(key)))
    reg = gates.get("regression")
    if reg is not None and reg.numbers.get("quality"):
        q, bq = reg.numbers["quality"], reg.numbers.get("baseline_quality") or {}
        for key in ("accuracy", "f1", "rmse"):
            if key in q:
                pairs.append((key, q[key], bq.get(key)))
    pairs = [p for p in pairs if p[1] is not None]
    if not pairs:
        return None
    x0, x1, top, bottom = PAD, W - 10, 24, H - PAD
    group = (x1 - x0) / len(pairs)
    width = group * 0.35
    out = _axes([((i + 0.5) / len(pairs), name) for i, (name, _, _) in enumerate(pairs)], 1.0, "x")
    for i, (name, cand_v, base_v) in enumerate(pairs):
        scale = max(abs(cand_v or 0), abs(base_v or 0)) or 1.0
        for k, (who, value, colour) in enumerate(
            (("candidate", cand_v, CANDIDATE), ("baseline", base_v, BASELINE))
        ):
            if value is None:
                continue
            h = (bottom - top) * abs(value) / scale
            x = x0 + i * group + group * 0.15 + k * width
            out.append(
                f'<rect class="bar" data-series="{who}" data-measure="{escape(name)}" x="{x:.1f}" '
                f'y="{bottom - h:.1f}" width="{width:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{who} {escape(name)}: {_num(value)}</title></rect>"
                f'<text x="{x + width / 2:.1f}" y="{bottom - h - 3:.1f}" text-anchor="middle">'
                f"{_num(value)}</text>"
            )
    return _svg(out, "compare", measures=len(pairs)) + _key(
        [("candidate", CANDIDATE), ("baseline", BASELINE)]
    )


def _memory_chart(gates: dict[str, Any]) -> str | None:
    g = gates.get("stability")
    points = g.numbers.get("rss") if g is not None else None
    if not points or len(points) < 2:
        return None
    t_max = max(points[-1][0], 1e-9)
    mib = [b / 1048576 for _, b in points]
    low, high = min(mib), max(mib)
    span = max(high - low, 1.0)
    x0, x1, top, bottom = PAD, W - 10, 10, H - PAD
    xy = [
        (x0 + (t / t_max) * (x1 - x0), bottom - (m - low + span * 0.05) / (span * 1.1) * (bottom - top))
        for (t, _), m in zip(points, mib, strict=True)
    ]
    path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    labels = [(f, f"{f * t_max:.1f} s") for f in (0, 0.25, 0.5, 0.75, 1)]
    out = [
        *_axes(labels, high, " MiB", y_min=low),
        f'<path d="{path}" fill="none" stroke="{CANDIDATE}" stroke-width="2"/>',
    ]
    return _svg(out, "memory", points=len(points), growth=f"{mib[-1] - mib[0]:.2f}")
