"""Measure the gateway's internal-channel candidates with ``hey`` against one tiny model (logreg, 1x4 FP32).

python bench/gateway/measure.py [--seconds 5] [--rounds 3]

prints a markdown table: req/s and p50 at c=32 and c=1, the median of interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from tests.fixtures.models import build_logreg  # noqa: E402
from tests.fixtures.processes import free_port  # noqa: E402

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}


def wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, f"process exited: {proc.args}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never ready")


def hey(url: str, body: Path, c: int, seconds: int) -> tuple[float, float]:
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(c),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50% in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    assert all(code == "200" for code, _ in codes), out
    return rps, p50


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    model = build_logreg(tmp / "lr.onnx")
    body = tmp / "body.json"
    body.write_text(json.dumps(BODY))
    py = sys.executable
    sock = tmp / "replica.sock"
    rest_port, tcp_port = free_port(), free_port()
    replica = [py, "-m", "conveyor.server", "--model", f"lr={model}"]
    setups: dict[str, tuple[list[list[str]], str]] = {
        "lean Starlette+ORT (no gateway)": (
            [[py, str(REPO / "bench/peers/lean/app.py"), "--model", str(model)]],
            "",
        ),
        "replica REST direct (no gateway)": ([replica], ""),
        "gateway, in-process replica": ([], "inprocess"),
        "gateway → UDS framed channel": ([[*replica, "--channel", f"unix:{sock}"]], f"unix:{sock}"),
        "gateway → TCP framed channel": (
            [[*replica, "--channel", f"tcp:127.0.0.1:{tcp_port}"]],
            f"tcp:127.0.0.1:{tcp_port}",
        ),
        "gateway → HTTP/1.1 keep-alive": (
            [[*replica, "--port", str(rest_port)]],
            f"http:127.0.0.1:{rest_port}",
        ),
    }
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        # Everything starts first and stays up (idle servers cost nothing); rounds then interleave the setups
        # so that a noisy neighbour on the machine hits them all alike, and the median of rounds is reported.
        for name, (backends, upstream) in setups.items():
            if args.only and not any(o in name for o in args.only):
                continue
            port = free_port()
            for cmd in backends:
                if not upstream:  # the backend is what clients hit
                    cmd = [*cmd, "--port", str(port)]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
            if upstream:
                time.sleep(3 if backends else 0)  # the replica loads before the gateway probes it
                gw = [py, str(HERE / "run_gateway.py"), "--model", str(model), "--port", str(port)]
                procs.append(subprocess.Popen([*gw, "--upstream", upstream], stdout=subprocess.DEVNULL))
            wait(f"http://127.0.0.1:{port}/v2/health/ready", procs[-1])
            urls[name] = f"http://127.0.0.1:{port}/v2/models/lr/infer"
        rounds: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                hey(url, body, 8, 1)  # warm up
                r32, p32 = hey(url, body, 32, args.seconds)
                r1, p1 = hey(url, body, 1, args.seconds)
                rounds[name].append((r32, p32, r1, p1))
        print("| setup | c=32 req/s | c=32 p50 ms | c=1 req/s | c=1 p50 ms |\n|---|---|---|---|---|")
        for name, results in rounds.items():
            r32, p32, r1, p1 = (statistics.median(col) for col in zip(*results, strict=True))
            print(f"| {name} | {r32:,.0f} | {p32:.2f} | {r1:,.0f} | {p1:.2f} |", flush=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
