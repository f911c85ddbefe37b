"""Fused models against their parts called one after another, on this machine in one run.

    python bench/fuse.py [--duration 5] [--concurrency 1,8] [--rounds 2]

Two fusions of scikit-learn models registered in a throwaway CONVEYOR_HOME: an ensemble (the mean of three
classifiers on 32 features: a logistic regression and two MLPs) and a pipeline (StandardScaler → PCA(16) →
an MLP). For each, the answer to one request is timed two ways:

- in-process, ONNX Runtime sessions as a replica builds them: the fused graph in one run, against each part
  run in turn and combined in numpy (the ensemble) or fed the previous part's outputs (the pipeline);
- through one `conveyor serve` of the fused version and its parts: one V2 request to the fused version,
  against one request per part, one after another, combined by the client as above. The same client (httpx,
  one keep-alive connection per worker, closed loop) at the same concurrency for the same time; the two are
  interleaved over --rounds and the median round is kept.

Writes bench/results/fuse.{json,md} and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import procs
import tables
from report import machine

ROOT = Path(__file__).resolve().parent.parent
CONVEYOR = Path(sys.executable).parent / "conveyor"
FEATURES = 32
Arrays = dict[str, np.ndarray]
Answer = Callable[[Arrays], Arrays]


def say(msg: str) -> None:
    print(f"[fuse] {msg}", flush=True)


def build_models() -> tuple[dict[str, Any], np.ndarray]:
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, FEATURES)).astype(np.float32) * 3 + 1
    y = (x[:, :4].sum(axis=1) > 4).astype(np.int64) + (x[:, 4] > 2)
    scaler = StandardScaler().fit(x)
    pca = PCA(16, random_state=0).fit(scaler.transform(x))
    z = pca.transform(scaler.transform(x)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        models: dict[str, Any] = {
            "logreg": LogisticRegression(max_iter=500).fit(x, y),
            "mlp_a": MLPClassifier(hidden_layer_sizes=(128,), max_iter=30, random_state=0).fit(x, y),
            "mlp_b": MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=30, random_state=1).fit(x, y),
            "scaler": scaler,
            "pca": pca,
            "head": MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0).fit(z, y),
        }
    return models, x


def register_and_fuse(models: dict[str, Any], x: np.ndarray, home: Path) -> dict[str, Any]:
    """The parts registered, the two fusions registered; returns what the timings need."""
    import conveyor
    from conveyor.fuse import FuseOptions, fuse
    from conveyor.fuse.ensemble import plan as ensemble_plan
    from conveyor.fuse.parts import load_parts
    from conveyor.fuse.pipeline import plan as pipeline_plan
    from conveyor.settings import Settings

    settings = Settings(home=home)
    sample = x[:300]
    for name, model in models.items():
        rows = sample if name != "head" else models["pca"].transform(models["scaler"].transform(sample))
        conveyor.register(name, model, sample=np.asarray(rows, dtype=np.float32), settings=settings)
    ensemble_refs = ["logreg:1", "mlp_a:1", "mlp_b:1"]
    pipeline_refs = ["scaler:1", "pca:1", "head:1"]
    with conveyor.open_registry(settings) as registry:
        e = fuse(registry, "ensemble", ensemble_refs, FuseOptions(ensemble="mean"))
        p = fuse(registry, "pipeline", pipeline_refs, FuseOptions(pipeline=True))
        for done in (e, p):
            say(f"registered {done.what} (max |diff| {done.parity['max_abs_diff']:.2g})")
        parts = {
            "ensemble": load_parts(registry, ensemble_refs),
            "pipeline": load_parts(registry, pipeline_refs),
        }
        plans = {
            "ensemble": ensemble_plan(parts["ensemble"], "mean", None),
            "pipeline": pipeline_plan(parts["pipeline"]),
        }
        fused = {
            "ensemble": registry.artifact_bytes(registry.resolve("ensemble:1")),
            "pipeline": registry.artifact_bytes(registry.resolve("pipeline:1")),
        }
    return {
        "parts": parts,
        "plans": plans,
        "fused": fused,
        "refs": {"ensemble": ensemble_refs, "pipeline": pipeline_refs},
    }


def sequential(kind: str, plan: Any, calls: list[Answer]) -> Answer:
    """One answer from the parts called one after another: combined in numpy, or chained."""
    from conveyor.fuse import ensemble, pipeline

    if kind == "ensemble":
        return lambda inputs: ensemble.combine(plan, [call(inputs) for call in calls])
    return lambda inputs: pipeline.chain(plan, inputs, lambda k, arrays: calls[k](arrays))


# -- in-process --


def time_calls(answer: Answer, inputs: Arrays, seconds: float) -> dict[str, float]:
    for _ in range(20):
        answer(inputs)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        answer(inputs)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "per_s": len(ms) / float(ms.sum() / 1000),
    }


def in_process(setup: dict[str, Any], x: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    from conveyor.runtime.onnx_model import OnnxModel

    rows = []
    threads = int(os.environ.get("CONVEYOR_INTRA_OP_THREADS", "0"))
    for kind in ("ensemble", "pipeline"):
        fused = OnnxModel(setup["fused"][kind], name=kind, intra_op_threads=threads)
        parts = [
            OnnxModel(p.onnx_bytes, name=p.version.name, intra_op_threads=threads)
            for p in setup["parts"][kind]
        ]
        seq = sequential(kind, setup["plans"][kind], [m.predict for m in parts])
        for batch in (1, 32):
            inputs = {"input": np.ascontiguousarray(x[:batch])}
            for how, answer in (("fused", fused.predict), ("sequential", seq)):
                numbers = time_calls(answer, inputs, seconds)
                rows.append({"fusion": kind, "path": "in-process ORT", "batch": batch, "how": how, **numbers})
                say(f"{kind} in-process batch {batch} {how}: p50 {numbers['p50_ms']:.3f} ms")
    return rows


# -- through conveyor serve --


def infer(client: httpx.Client, model: str, inputs: Arrays) -> Arrays:
    body = {
        "inputs": [
            {"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
            for k, v in inputs.items()
        ]
    }
    r = client.post(f"/v2/models/{model}/infer", json=body)
    r.raise_for_status()
    return {
        o["name"]: np.asarray(o["data"], dtype=np.int64 if o["datatype"] == "INT64" else np.float32).reshape(
            o["shape"]
        )
        for o in r.json()["outputs"]
    }


def drive(
    url: str,
    answer: Callable[[httpx.Client, Arrays], Arrays],
    inputs: Arrays,
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    """Closed loop: ``concurrency`` workers, each asking for the next answer when it has the last one."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    warm = threading.Barrier(concurrency + 1)
    go = threading.Event()
    deadline = [0.0]

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            answer(client, inputs)  # the connection open before the clock starts
            warm.wait(timeout=60)
            go.wait(timeout=60)
            while time.perf_counter() < deadline[0]:
                t0 = time.perf_counter()
                try:
                    answer(client, inputs)
                except httpx.HTTPError:
                    errors[i] += 1
                    continue
                latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    warm.wait(timeout=60)
    began = time.perf_counter()
    deadline[0] = began + seconds
    go.set()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - began
    ms = np.asarray([v for lat in latencies for v in lat]) * 1000
    return {
        "answers": int(ms.size),
        "per_s": ms.size / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else None,
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else None,
        "errors": sum(errors),
    }


def through_serve(
    setup: dict[str, Any], x: np.ndarray, home: Path, work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    refs = ["ensemble:1", "pipeline:1", *setup["refs"]["ensemble"], *setup["refs"]["pipeline"]]
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    server = procs.start([str(CONVEYOR), "serve", *refs, "--port", str(port)], env, work / "serve.log")
    rows = []
    try:
        _wait_ready(url, server, work / "serve.log")
        inputs = {"input": np.ascontiguousarray(x[:1])}
        for kind in ("ensemble", "pipeline"):
            names = [r.split(":")[0] for r in setup["refs"][kind]]
            plan = setup["plans"][kind]

            def fused(client: httpx.Client, arrays: Arrays, kind: str = kind) -> Arrays:
                return infer(client, kind, arrays)

            def seq(
                client: httpx.Client,
                arrays: Arrays,
                names: list[str] = names,
                kind: str = kind,
                plan: Any = plan,
            ) -> Arrays:
                calls: list[Answer] = [lambda a, n=n: infer(client, n, a) for n in names]
                return sequential(kind, plan, calls)(arrays)

            _same(fused, seq, url, inputs, kind)
            for c in args.concurrency:
                runs: dict[str, list[dict[str, Any]]] = {"fused": [], "sequential": []}
                for _ in range(args.rounds):
                    for how, answer in (("fused", fused), ("sequential", seq)):
                        runs[how].append(drive(url, answer, inputs, c, args.duration))
                for how, measured in runs.items():
                    median = sorted(measured, key=lambda r: r["per_s"])[len(measured) // 2]
                    rows.append(
                        {
                            "fusion": kind,
                            "path": "conveyor serve",
                            "batch": 1,
                            "how": how,
                            "concurrency": c,
                            **median,
                            "rounds": [round(r["per_s"], 1) for r in measured],
                        }
                    )
                    say(
                        f"{kind} serve c={c} {how}: {median['per_s']:.0f} answers/s, "
                        f"p50 {median['p50_ms']:.2f} ms, errors {median['errors']}"
                    )
    finally:
        procs.stop(server, set())
    return rows


def _wait_ready(url: str, server: Any, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"conveyor serve exited: {log.read_text()[-800:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"conveyor serve not ready within {timeout_s:.0f} s: {log.read_text()[-800:]}")


def _same(
    fused: Callable[..., Arrays], seq: Callable[..., Arrays], url: str, inputs: Arrays, kind: str
) -> None:
    """The two ways give the same answer before either is timed."""
    with httpx.Client(base_url=url, timeout=30) as client:
        a, b = fused(client, inputs), seq(client, inputs)
    for name, value in a.items():
        if np.abs(np.asarray(value, dtype=np.float64) - np.asarray(b[name], dtype=np.float64)).max() > 1e-5:
            raise SystemExit(
                f"{kind}: the fused answer's {name!r} differs from the parts': {value} vs {b[name]}"
            )


# -- the table --


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    columns = [
        "fusion",
        "path",
        "batch",
        "c",
        "fused p50 ms",
        "sequential p50 ms",
        "fused answers/s",
        "sequential answers/s",
        "speed-up",
    ]
    body = []
    keyed: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["fusion"], r["path"], r["batch"], r.get("concurrency", 1)), {})[r["how"]] = r
    for (fusion, path, batch, c), pair in keyed.items():
        f, s = pair["fused"], pair["sequential"]
        body.append(
            [
                fusion,
                path,
                str(batch),
                str(c),
                tables.num(f["p50_ms"], 3),
                tables.num(s["p50_ms"], 3),
                tables.num(f["per_s"]),
                tables.num(s["per_s"]),
                f"{f['per_s'] / s['per_s']:.2f}x" if s["per_s"] else "-",
            ]
        )
    return columns, body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per timed run")
    ap.add_argument("--concurrency", default="1,8", help="comma list of client workers")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds through conveyor serve")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    work = Path(tempfile.mkdtemp(prefix="conveyor-fuse-bench-"))
    home = work / "home"
    try:
        models, x = build_models()
        setup = register_and_fuse(models, x, home)
        rows = in_process(setup, x[1000:], args.duration)
        rows += through_serve(setup, x[1000:], home, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    columns, body = table(rows)
    meta = {"run": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "fuse.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    concurrency = ",".join(map(str, args.concurrency))
    cmd = f"python bench/fuse.py --duration {args.duration:g} --concurrency {concurrency}"
    cmd += f" --rounds {args.rounds}"
    md = [
        f"# Fused models against their parts one after another, {meta['run']}",
        "",
        f"`{cmd}`; {meta['machine'].get('cpu')}, {meta['machine'].get('cores')} cores.",
        "",
        *tables.markdown(columns, body),
        "",
    ]
    (args.results_dir / "fuse.md").write_text("\n".join(md))
    tables.show("fused vs sequential", columns, body, right_from=2)
    errors = sum(r.get("errors", 0) for r in rows)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
