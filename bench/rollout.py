"""Zero-downtime version changes under load: how long a rollout takes and what the clients see.

    python bench/rollout.py [--model tiny] [--replicas 2] [--concurrency 8] [--rounds 4]

Starts ``conveyor up`` with a Deployment of the bench model, drives it with hey (closed loop, no rate
limit) and changes the model version ``--rounds`` times (1 -> 2 -> 1 ...) through the management API. For each
change it times: the new replicas ready and routed, and the old ones drained and stopped. hey's summary gives
the requests, errors and status codes over the whole run. Writes bench/results/rollout.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import procs
import wire
from load import parse
from models import build
from report import machine
from servers import admin_token

ROOT = Path(__file__).resolve().parent.parent
CONVEYOR = Path(sys.executable).parent / "conveyor"


def deployment(name: str, version: int, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"model": f"{name}:{version}", "replicas": replicas},
    }


def replicas(api: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.get("/api/v1/replicas").json()["replicas"]
    return rows


def wait(check: Any, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise SystemExit(f"{what}: not within {timeout_s:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", choices=["tiny", "mlp", "cnn"])
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install -y hey (make bench does it)")

    work = Path(tempfile.mkdtemp(prefix="conveyor-rollout-"))
    env = {**os.environ, "CONVEYOR_HOME": str(work / "home")}
    model = build(args.model, work / "models")
    for _ in (1, 2):  # two versions of the same bytes: a version change is still a full rollout
        subprocess.run(
            [str(CONVEYOR), "models", "register", args.model, str(model.path)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port, api_port = procs.free_port(), procs.free_port()
    gateway = f"http://127.0.0.1:{port}"
    body = work / "body.json"
    body.write_bytes(wire.encode(wire.V2, model.input_name, model.load_input))
    up = procs.start(
        [str(CONVEYOR), "up", "--port", str(port), "--api-port", str(api_port)], env, work / "up.log"
    )
    rounds: list[dict[str, Any]] = []
    hey: subprocess.Popen[str] | None = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as api:
            wait(lambda: _ok(api, "/api/v1/health"), 60, "the control plane")
            # the API and the (non-public) Deployment both want the admin token `conveyor up` wrote
            token = admin_token(work / "home")
            if token is None:
                raise SystemExit(
                    f"no admin token under {work / 'home'}: {(work / 'up.log').read_text()[-400:]}"
                )
            bearer = f"Bearer {token}"
            api.headers["authorization"] = bearer
            _apply(api, deployment(args.model, 1, args.replicas))

            def serving(version: str) -> bool:
                rows = replicas(api)
                return len(rows) == args.replicas and all(
                    r["state"] == "ready" and r["version"] == version for r in rows
                )

            wait(lambda: serving("1"), 120, "the first replicas")
            hey = subprocess.Popen(
                [
                    "hey",
                    "-z",
                    "600s",
                    "-c",
                    str(args.concurrency),
                    "-t",
                    "30",
                    "-m",
                    "POST",
                    "-T",
                    "application/json",
                    "-H",
                    f"authorization: {bearer}",
                    "-D",
                    str(body),
                    f"{gateway}/v2/models/{args.model}/infer",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(2.0)  # steady load before the first change
            version = 1
            for n in range(1, args.rounds + 1):
                previous, version = version, 2 if version == 1 else 1
                started = time.monotonic()
                _apply(api, deployment(args.model, version, args.replicas))
                routed = wait(lambda v=str(version): _routed(api, v), 120, "the new version routed")
                done = wait(lambda v=str(version): serving(v), 120, "the old replicas stopped") + routed
                rounds.append(
                    {
                        "round": n,
                        "change": f"{previous} -> {version}",
                        "routed_s": round(routed, 2),
                        "drained_s": round(time.monotonic() - started, 2),
                    }
                )
                print(
                    f"[rollout] {previous} -> {version}: new version routed after {routed:.2f} s, "
                    f"old replicas stopped after {done:.2f} s",
                    flush=True,
                )
                time.sleep(1.0)
            hey.send_signal(signal.SIGINT)
            out, _ = hey.communicate(timeout=60)
            load = parse(out)
    finally:
        if hey is not None and hey.poll() is None:
            hey.kill()
        procs.stop(up, set(), grace_s=60)
        shutil.rmtree(work, ignore_errors=True)

    summary = {
        "model": args.model,
        "replicas": args.replicas,
        "concurrency": args.concurrency,
        "requests": load.requests,
        "rps": round(load.rps),
        "p99_ms": load.p99_ms,
        "errors": load.errors,
        "status": load.status,
        "error_sample": load.error_sample,
    }
    meta: dict[str, Any] = {"run": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "rollout.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "rounds": rounds}, indent=1) + "\n"
    )
    md = [
        f"# Rollouts under load, {meta['run']}",
        "",
        f"`python bench/rollout.py --model {args.model} --replicas {args.replicas} "
        f"--concurrency {args.concurrency} --rounds {args.rounds}`; "
        f"machine: {_machine_line(meta['machine'])}.",
        "",
        "| change | new version routed (s) | old replicas stopped (s) |",
        "|---|---:|---:|",
        *[f"| {r['change']} | {r['routed_s']:.2f} | {r['drained_s']:.2f} |" for r in rounds],
        "",
        f"hey, {args.concurrency} workers, whole run: {load.requests:,} requests, {load.rps:,.0f} req/s, "
        f"p99 {load.p99_ms} ms, **{load.errors} errors** (status codes {load.status}).",
        "",
    ]
    (args.results_dir / "rollout.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if load.errors == 0 else 1


def _apply(api: httpx.Client, document: dict[str, Any]) -> None:
    resp = api.post("/api/v1/apply", json={"documents": [document]})
    if resp.is_error:  # a refused apply would otherwise show as a rollout that never comes
        raise SystemExit(f"apply: HTTP {resp.status_code}: {resp.text[:300]}")


def _ok(api: httpx.Client, path: str) -> bool:
    try:
        return api.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def _routed(api: httpx.Client, version: str) -> bool:
    routes = api.get("/api/v1/routing").json()["routes"]
    return any(r["default"] and r["version"] == version and r["replicas"] for r in routes)


def _machine_line(m: dict[str, Any]) -> str:
    return f"{m['cpu']}, {m['cores']} cores, load average at start {m['load_average_at_start']}"


if __name__ == "__main__":
    sys.exit(main())
