"""Measure the replica with and without dynamic batching under real HTTP load (``hey``); not a pytest module.

    .venv/bin/python -m tests.perf_batcher [--models logreg,mlp,cnn] [--conc 1,32] [--seconds 5]
        [--config off=--max-batch-size=1 --config on=] [--baseline-src /path/to/old/checkout/src]

Prints one markdown row per (model, concurrency, config) and raw ONNX Runtime batch-32 throughput.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson

from tests.fixtures.batching_models import build_cnn, build_mlp
from tests.fixtures.models import build_logreg
from tests.fixtures.processes import ProcessGroup, free_port, output_of, wait_http_ok

SHAPES = {"logreg": (4,), "mlp": (784,), "cnn": (3, 64, 64)}
BUILDERS = {"logreg": build_logreg, "mlp": build_mlp, "cnn": build_cnn}


def model_file(name: str, root: Path) -> Path:
    path = root / f"{name}.onnx"
    if not path.exists():
        BUILDERS[name](path)
    return path


def body(name: str) -> bytes:
    """A batch-1 V2 JSON body with full-precision floats, as the bench sends."""
    x = np.random.default_rng(0).normal(size=SHAPES[name]).astype(np.float32)
    tensor = {
        "name": _input(name),
        "datatype": "FP32",
        "shape": [1, *SHAPES[name]],
        "data": x.ravel().tolist(),
    }
    return orjson.dumps({"inputs": [tensor]})


def _input(name: str) -> str:
    return "input" if name == "logreg" else "x"


def raw_ort(path: Path, name: str, batch: int = 32, seconds: float = 3.0) -> float:
    """Rows per second of bare InferenceSession.run at ``batch`` (default session options)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(batch, *SHAPES[name])).astype(np.float32)
    feeds = {_input(name): x}
    for _ in range(20):
        sess.run(None, feeds)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(None, feeds)
        n += 1
    return n * batch / (time.perf_counter() - start)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (contention on a shared machine barely moves it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hey(url: str, payload: Path, conc: int, seconds: float) -> tuple[float, float, float, str]:
    args = ["hey", "-z", f"{seconds}s", "-c", str(conc), "-m", "POST", "-T", "application/json"]
    out = subprocess.run([*args, "-D", str(payload), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50%+ in ([\d.]+)", out).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99%+ in ([\d.]+)", out).group(1)) * 1000  # type: ignore[union-attr]
    codes = " ".join(re.findall(r"\[(\d+)\]\s+(\d+) responses", out).__repr__().split())
    return rps, p50, p99, codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="logreg,mlp,cnn")
    ap.add_argument("--conc", default="1,32")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--config", action="append", help="LABEL=launch flags (space separated)")
    ap.add_argument("--baseline-src", help="run this checkout's src (e.g. the commit before batching) too")
    ap.add_argument("--show-log", action="store_true", help="print the replica's log (batcher stats)")
    ap.add_argument("--repeat", type=int, default=1, help="run the configs this many times, interleaved")
    ap.add_argument("--raw", action="store_true", help="also measure bare ORT batch-32 throughput")
    args = ap.parse_args()
    root = Path(tempfile.gettempdir()) / "conveyor-perf"
    root.mkdir(exist_ok=True)
    configs = [c.partition("=")[::2] for c in (args.config or ["off=--max-batch-size 1", "on="])]
    if args.baseline_src:
        configs.insert(0, ("baseline", "@" + args.baseline_src))
    print("| model | c | config | req/s | p50 ms | p99 ms | server CPU µs/req | codes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        path = model_file(name, root)
        payload = root / f"{name}.json"
        payload.write_bytes(body(name))
        for label, flags in configs * args.repeat:
            env = dict(os.environ)
            extra = [f for f in flags.split() if "=" not in f]
            env.update(f.split("=", 1) for f in flags.split() if "=" in f)
            if flags.startswith("@"):
                env["PYTHONPATH"] = flags[1:]
                extra = []
            group, port = ProcessGroup(), free_port()
            cmd = [sys.executable, "-m", "conveyor.server", "--port", str(port), *extra]
            proc = group.start([*cmd, "--model", f"{name}={path}"], env=env)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_http_ok(f"{base}/v2/health/ready", proc, timeout=30)
                url = f"{base}/v2/models/{name}/infer"
                for conc in map(int, args.conc.split(",")):
                    subprocess.run(
                        ["hey", "-z", "1s", "-c", str(conc), "-m", "POST", "-D", str(payload), url],
                        capture_output=True,
                        check=False,
                    )  # warm up
                    cpu0 = cpu_s(proc.pid)
                    rps, p50, p99, codes = hey(url, payload, conc, args.seconds)
                    cpu_us = (cpu_s(proc.pid) - cpu0) / (rps * args.seconds) * 1e6
                    cols = f"{rps:.0f} | {p50:.2f} | {p99:.2f} | {cpu_us:.0f}"
                    print(f"| {name} | {conc} | {label} | {cols} | {codes} |", flush=True)
            finally:
                group.stop(proc)
                if args.show_log:
                    print(output_of(proc)[-2000:])
                group.stop_all()
        if args.raw and name != "logreg":
            print(f"raw ORT batch-32 {name}: {raw_ort(path, name):.0f} rows/s", flush=True)


if __name__ == "__main__":
    main()
