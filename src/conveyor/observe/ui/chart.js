// Line charts drawn as SVG: one line per version, axes with a few round ticks, a legend. No library: the
// page must work offline and paint fast. Colours come from CSS classes (s0..s7), so light and dark themes
// both apply.

const NS = "http://www.w3.org/2000/svg";
const W = 480;
const H = 180;
const PAD = { left: 52, right: 10, top: 10, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// About `count` round tick values from at or below `lo` to at or above `hi`.
export function ticks(lo, hi, count = 4) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  let v = Math.floor(lo / step) * step;
  out.push(+v.toPrecision(12));
  while (v < hi - step * 1e-9) {
    v += step;
    out.push(+v.toPrecision(12));
  }
  return out;
}

function ago(seconds) {
  const s = Math.round(-seconds);
  if (s <= 0) return "now";
  return s % 60 === 0 ? `-${s / 60}m` : `-${s}s`;
}

// Draw `series` ([{name, values}], values aligned with `t`) into `box`, replacing what it held.
// `format` turns a y value into a tick label. Times are seconds on the server's clock; `now` is the latest.
export function lineChart(box, { t, now, spanS, series, format }) {
  box.replaceChildren();
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  let top = 0;
  let points = 0;
  for (const s of series) {
    for (const v of s.values) {
      if (v !== null && v !== undefined) {
        top = Math.max(top, v);
        points += 1;
      }
    }
  }
  const yTicks = ticks(0, top > 0 ? top * 1.1 : 1);
  const yMax = yTicks[yTicks.length - 1];
  const xOf = (time) => x1 - ((now - time) / spanS) * (x1 - x0);
  const yOf = (v) => y0 - (v / yMax) * (y0 - y1);
  for (const v of yTicks) {
    root.append(svg("line", { x1: x0, x2: x1, y1: yOf(v), y2: yOf(v), class: "grid" }));
    root.append(svg("text", { x: x0 - 6, y: yOf(v) + 4, class: "tick", "text-anchor": "end" }, format(v)));
  }
  const stepX = spanS <= 180 ? 30 : spanS <= 420 ? 60 : 120;
  for (let back = 0; back <= spanS + 1e-9; back += stepX) {
    const x = x1 - (back / spanS) * (x1 - x0);
    root.append(svg("line", { x1: x, x2: x, y1: y0, y2: y0 + 4, class: "axis" }));
    root.append(svg("text", { x, y: H - 6, class: "tick", "text-anchor": "middle" }, ago(-back)));
  }
  root.append(svg("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }));
  series.forEach((s, i) => {
    let d = "";
    let pen = false;
    s.values.forEach((v, k) => {
      if (v === null || v === undefined || now - t[k] > spanS) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${xOf(t[k]).toFixed(1)},${yOf(v).toFixed(1)}`;
      pen = true;
    });
    if (d) root.append(svg("path", { d, class: `line s${i % 8}`, "data-version": s.name }));
  });
  const last = series.map((s) => [s.name, lastValue(s.values)]);
  root.setAttribute("data-points", String(points));
  root.setAttribute("data-last", JSON.stringify(Object.fromEntries(last)));
  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch s${i % 8}`;
    const value = lastValue(s.values);
    item.append(swatch, `v${s.name}`, value === null ? "" : ` ${format(value)}`);
    legend.append(item);
  });
  if (!series.length) {
    root.append(svg("text", { x: (x0 + x1) / 2, y: (y0 + y1) / 2, class: "empty", "text-anchor": "middle" }, "no requests yet"));
  }
  box.append(root, legend);
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) {
    if (values[i] !== null && values[i] !== undefined) return values[i];
  }
  return null;
}
