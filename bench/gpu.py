"""Conveyor on a GPU beside raw ONNX Runtime on the same device, with the CPU rows beside them.

    python bench/gpu.py [--models cnn,resnet] [--duration 5] [--warmup 2] [--out bench/results/gpu.md]

Two models built here: the bench's small CNN (bench/models.py, 3x64x64) and a ResNet-18-sized CNN (stem
7x7/2 and max pool, four stages of two basic blocks with 64..512 channels, global average pool, 1000 classes:
11.7 M parameters, 3x224x224 inputs, built with onnx.helper, random weights). For each device this machine
has (the CPU always; CUDA when ONNX Runtime has its provider and the driver shows a GPU):

- raw ONNX Runtime on the device: one InferenceSession (as a replica builds it: runtime.OnnxModel), calls of
  batch 1 and of batch 32 back to back for --duration seconds: inferences/s = rows answered per second;
- Conveyor: `conveyor serve MODEL.onnx --device D` (one replica in the gateway's process, the device's
  batching defaults), closed-loop load of batch-1 requests with the tensor as V2 binary data at concurrency
  1 and 32 (conveyor.loadgen: raw HTTP/1.1, one keep-alive connection per worker).

The target (issue 18): on the GPU, Conveyor at c=32 gives at least 70% of raw ONNX Runtime's batch-32
inferences/s. Without a GPU the GPU rows are missing and the report says so. Writes --out (Markdown) and the
same rows as JSON beside it, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import procs
import tables
import wire
from models import build as build_bench_model
from onnx import TensorProto, helper, numpy_helper
from report import machine

ROOT = Path(__file__).resolve().parent.parent
CONVEYOR = [sys.executable, "-m", "conveyor.cli.main"]
TARGET = 0.70
OPSET = 17


def say(msg: str) -> None:
    print(f"[gpu] {msg}", flush=True)


# -- models -----------------------------------------------------------------------------------------------


def resnet18() -> onnx.ModelProto:
    """A ResNet-18-shaped graph (no batch norm: folded into the convolutions' biases, as exporters do)."""
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    count = iter(range(10_000))

    def conv(x: str, c_in: int, c_out: int, k: int, stride: int, relu: bool) -> str:
        i = next(count)
        w = rng.standard_normal((c_out, c_in, k, k)).astype(np.float32) * np.float32(
            np.sqrt(2 / (c_in * k * k))
        )
        inits.extend(
            [
                numpy_helper.from_array(w, f"w{i}"),
                numpy_helper.from_array(np.zeros(c_out, np.float32), f"b{i}"),
            ]
        )
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [f"c{i}"],
                kernel_shape=[k, k],
                strides=[stride] * 2,
                pads=[pad] * 4,
            )
        )
        if not relu:
            return f"c{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        return f"r{i}"

    x = conv("input", 3, 64, 7, 2, relu=True)
    nodes.append(
        helper.make_node("MaxPool", [x], ["stem"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    )
    x, c_in = "stem", 64
    for stage, c_out in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv(x, c_in, c_out, 3, stride, relu=True)
            y = conv(y, c_out, c_out, 3, 1, relu=False)
            shortcut = conv(x, c_in, c_out, 1, stride, relu=False) if (stride != 1 or c_in != c_out) else x
            i = next(count)
            nodes += [
                helper.make_node("Add", [y, shortcut], [f"s{i}"]),
                helper.make_node("Relu", [f"s{i}"], [f"o{i}"]),
            ]
            x, c_in = f"o{i}", c_out
    fc = rng.standard_normal((512, 1000)).astype(np.float32) / np.float32(np.sqrt(512))
    inits += [numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(np.zeros(1000, np.float32), "fcb")]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


def build_models(names: list[str], out: Path) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """name -> (ONNX file, input shape without the batch dimension)."""
    models: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for name in names:
        if name == "resnet":
            path = out / "resnet.onnx"
            path.write_bytes(resnet18().SerializeToString())
            models[name] = (path, (3, 224, 224))
        else:
            m = build_bench_model(name, out)
            models[name] = (m.path, m.input_shape)
        say(f"built {name}: {models[name][0].stat().st_size / 1e6:.1f} MB, input {models[name][1]}")
    return models


# -- what this machine runs on ----------------------------------------------------------------------------


def devices() -> tuple[list[str], str | None]:
    """The devices to measure (cpu, and cuda when it runs here) and why the GPU rows are missing, if so."""
    from conveyor.errors import InvalidInput
    from conveyor.runtime.providers import Device, choose, local_capabilities

    try:
        choose(Device("cuda"), local_capabilities(), what="the GPU rows")
    except InvalidInput as e:
        return ["cpu"], e.message
    return ["cpu", "cuda"], None


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "none"
    return out.replace("\n", "; ") or "none"


# -- raw ONNX Runtime ---------------------------------------------------------------------------------------


def raw_rows(
    name: str, path: Path, shape: tuple[int, ...], device: str, seconds: float
) -> list[dict[str, Any]]:
    from conveyor.runtime.onnx_model import OnnxModel

    model = OnnxModel(path.read_bytes(), name=name, device=device, io_binding=False)
    input_name = model.signature.inputs[0].name
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 32):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        feeds = {input_name: x}
        for _ in range(3):  # warm-up: allocations, cuDNN's algorithm search
            model.session.run(None, feeds)
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 3:
            start = time.perf_counter()
            model.session.run(None, feeds)
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000
        rows.append(
            {
                "model": name,
                "device": device,
                "provider": model.provider,
                "how": f"raw ONNX Runtime, batch {batch}",
                "kind": "raw",
                "batch": batch,
                "inferences_s": batch * len(ms) / float(ms.sum() / 1000),
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "errors": 0,
            }
        )
        say(f"{name} {device} raw b{batch}: {rows[-1]['inferences_s']:,.0f} inferences/s")
    return rows


# -- Conveyor -----------------------------------------------------------------------------------------------


def serve(path: Path, device: str, port: int, home: Path, log: Path) -> Any:
    env = {**os.environ, "CONVEYOR_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    argv = [*CONVEYOR, "serve", str(path), "--device", device, "--port", str(port)]
    return procs.start(argv, env, log, cwd=ROOT)


def wait_ready(port: int, proc: Any, log: Path, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"conveyor serve exited {proc.returncode}: {log.read_text()[-800:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"conveyor serve not ready in {timeout_s:.0f}s: {log.read_text()[-800:]}")


def served_provider(port: int, name: str) -> str:
    """What the served model runs on, as its V2 metadata says (docs/gpu.md)."""
    import httpx

    meta = httpx.get(f"http://127.0.0.1:{port}/v2/models/{name}", timeout=10).json()
    return str(meta.get("parameters", {}).get("execution_provider", "?"))


def conveyor_rows(
    name: str, path: Path, shape: tuple[int, ...], device: str, seconds: float, warmup: float, work: Path
) -> list[dict[str, Any]]:
    from conveyor.loadgen import Load, run_load

    port = procs.free_port()
    log = work / f"serve-{name}-{device}.log"
    proc = serve(path, device, port, work / "home", log)
    rows = []
    try:
        wait_ready(port, proc, log)
        provider = served_provider(port, name)
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        body = wire.encode(wire.V2_BINARY, "input", x)
        headers = wire.headers(wire.V2_BINARY, body)
        for concurrency in (1, 32):
            load = Load(
                bodies=[body], concurrency=concurrency, warmup_s=warmup, duration_s=seconds, headers=headers
            )
            result = run_load("127.0.0.1", port, f"/v2/models/{name}/infer", load)
            rows.append(
                {
                    "model": name,
                    "device": device,
                    "provider": provider,
                    "how": f"Conveyor, c={concurrency}, binary",
                    "kind": "conveyor",
                    "concurrency": concurrency,
                    "inferences_s": result.rps,
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "errors": result.errors,
                    "error_sample": result.error_sample,
                }
            )
            say(f"{name} {device} conveyor c={concurrency}: {result.rps:,.0f} req/s, {result.errors} errors")
    finally:
        procs.stop(proc, set())
    return rows


# -- report -------------------------------------------------------------------------------------------------


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conveyor c=32 against raw batch 32, per model and device."""
    out = []
    for r in rows:
        if r["kind"] != "conveyor" or r.get("concurrency") != 32:
            continue
        raw = next(
            (
                x
                for x in rows
                if x["kind"] == "raw"
                and x["batch"] == 32
                and x["model"] == r["model"]
                and x["device"] == r["device"]
            ),
            None,
        )
        if raw and raw["inferences_s"]:
            share = r["inferences_s"] / raw["inferences_s"]
            out.append({"model": r["model"], "device": r["device"], "share": share, "met": share >= TARGET})
    return out


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], missing: str | None) -> str:
    columns = ["model", "device", "provider", "how", "inferences/s", "p50 ms", "p99 ms", "errors"]
    body = [
        [
            r["model"],
            r["device"],
            r["provider"],
            r["how"],
            tables.num(r["inferences_s"]),
            tables.num(r["p50_ms"], 2),
            tables.num(r["p99_ms"], 2),
            str(r["errors"]),
        ]
        for r in rows
    ]
    m = meta["machine"]
    lines = [
        "# Conveyor on a GPU (bench/gpu.py)",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores, {m['ram_gib']} GiB), GPU: {meta['gpu']}; "
        f"onnxruntime {m['onnxruntime']}, Python {m['python']}, Conveyor {m['conveyor_commit']}"
        + (" (uncommitted changes under src/)" if m["conveyor_src_dirty"] else "")
        + f"; {m['date']}, load average at start {m['load_average_at_start']}.",
        "",
        f"Each row ran {meta['duration_s']} s or three batch-32 calls if longer (Conveyor after "
        f"{meta['warmup_s']} s of warm-up, or one such call). Raw ONNX "
        "Runtime: back-to-back calls of one session; inferences/s = rows per second. Conveyor: `conveyor "
        "serve MODEL --device D`, batch-1 requests with the tensor as V2 binary data, closed loop at c=1 "
        "and c=32.",
        "",
        *tables.markdown(columns, body),
        "",
    ]
    if missing:
        lines += [f"**GPU rows missing:** {missing}.", ""]
    for r in ratios(rows):
        verdict = "meets" if r["met"] else "misses"
        lines.append(
            f"- {r['model']} on {r['device']}: Conveyor c=32 gives {r['share']:.0%} of raw batch-32 "
            "inferences/s "
            + (
                f"({verdict} the {TARGET:.0%} target)"
                if r["device"] == "cuda"
                else "(the target is the GPU's)"
            )
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn,resnet", help="cnn, resnet (comma-separated)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds each row is measured")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before a Conveyor row")
    ap.add_argument(
        "--devices", default="", help="only these of cpu,cuda (default: every one this machine has)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.md")
    args = ap.parse_args(argv)
    found, missing = devices()
    wanted = [d for d in found if not args.devices or d in args.devices.split(",")]
    with tempfile.TemporaryDirectory(prefix="conveyor-gpu-bench-") as tmp:
        work = Path(tmp)
        models = build_models(args.models.split(","), work / "models")
        rows: list[dict[str, Any]] = []
        for name, (path, shape) in models.items():
            for device in wanted:
                raw = raw_rows(name, path, shape, device, args.duration)
                # A window shorter than a few batch-32 calls measures nothing at c=32 (the ResNet on a CPU).
                call_s = max(r["p50_ms"] for r in raw) / 1000
                seconds, warmup = max(args.duration, 3 * call_s), max(args.warmup, call_s)
                rows += raw + conveyor_rows(name, path, shape, device, seconds, warmup, work)
    meta = {"machine": machine(), "gpu": gpu_name(), "duration_s": args.duration, "warmup_s": args.warmup}
    text = markdown(meta, rows, missing)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows, "gpu_missing": missing}, indent=1)
    )
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
