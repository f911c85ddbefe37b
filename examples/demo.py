"""The main job end to end on embedded defaults: train → register → serve → predict over HTTP → stop.

Run with ``make demo``. Everything lives in a throwaway CONVEYOR_HOME; the server binds 127.0.0.1 on a
free port and is stopped by its process id at the end, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skops.io import dump

BIN = Path(sys.executable).parent
CONVEYOR = str(BIN / "conveyor")


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(*args: str, env: dict[str, str]) -> None:
    print("$ conveyor " + " ".join(args), flush=True)
    subprocess.run([CONVEYOR, *args], env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="conveyor-demo-"))
    env = {**os.environ, "CONVEYOR_HOME": str(work / "home")}

    step("Train a scikit-learn pipeline on the iris data set")
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    dump(model, work / "iris.skops")
    np.save(work / "sample.npy", x[::5].astype(np.float32))
    print(f"trained {model}; accuracy on the training set {model.score(x, y):.3f}")

    step("Register it: convert to ONNX, check parity on a sample, store version 1 as 'production'")
    run(
        "models",
        "register",
        "iris",
        str(work / "iris.skops"),
        "--sample",
        str(work / "sample.npy"),
        "--alias",
        "production",
        "--tag",
        "dataset=iris",
        env=env,
    )
    run("models", "list", env=env)

    step("Serve iris@production over the Open Inference Protocol")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([CONVEYOR, "serve", "iris@production", "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited with {server.returncode}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become ready in 60 s")
            time.sleep(0.2)

        step(f"Send real requests to {url}/v2/models/iris/infer")
        rows = x[[0, 60, 120]].astype(np.float32)
        body = {
            "id": "demo-1",
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ],
        }
        answer = httpx.post(f"{url}/v2/models/iris/infer", json=body, timeout=10).json()
        names = load_iris().target_names
        outputs = {o["name"]: o for o in answer["outputs"]}
        label_out = next(o for o in answer["outputs"] if o["datatype"] == "INT64")
        print(f"response id={answer['id']} model={answer['model_name']}:{answer['model_version']}")
        for row, label in zip(rows.tolist(), label_out["data"], strict=True):
            print(f"  {[round(v, 2) for v in row]} -> {names[label]}")
        print("outputs:", ", ".join(f"{n} {o['shape']}" for n, o in outputs.items()))

        step("The same through the CLI client")
        run("predict", "iris", "--url", url, "--data", "[[6.3, 3.3, 6.0, 2.5]]", env=env)

        step("Done")
        print(f"The endpoint was {url}/v2/models/iris/infer (stopping it now).")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"server stopped (exit {server.returncode})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
