"""The main job end to end on embedded defaults, through `conveyor up -f examples/iris.yaml`:

train → register → deploy (control plane + gateway + 2 replicas) → a client token → predict → roll out
version 2 under constant traffic → roll back → stop. Run with ``make demo``.

The API and the gateway ask every client for a bearer token (``Authorization: Bearer <token>``): the demo's
own calls send the admin token the control plane wrote under the home, its inference calls a predictor token
made with `conveyor tokens create`, as a client application would (docs/security.md).

Everything lives in a throwaway CONVEYOR_HOME; the stack binds 127.0.0.1 on free ports and is stopped by its
process id at the end (Ctrl-C semantics: gateway drains, then the replicas), whatever happens.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skops.io import dump

BIN = Path(sys.executable).parent
CONVEYOR = str(BIN / "conveyor")
SPEC = Path(__file__).with_name("iris.yaml")


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def command_line(*args: str) -> str:
    """The command as it can be pasted into a shell (``--data '[[6.3, 3.3, 6.0, 2.5]]'`` quoted)."""
    return shlex.join(["conveyor", *args])


def run(*args: str, env: dict[str, str]) -> None:
    print(f"$ {command_line(*args)}", flush=True)
    subprocess.run([CONVEYOR, *args], env=env, check=True)


def output_of(*args: str, env: dict[str, str]) -> str:
    """What the command prints on stdout (echoed as ``$(...)``, the way a shell script captures it)."""
    print(f"$ TOKEN=$({command_line(*args)})", flush=True)
    return subprocess.run([CONVEYOR, *args], env=env, check=True, stdout=subprocess.PIPE, text=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(work: Path, c: float) -> Path:
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(x, y)
    path = work / f"iris-c{c:g}.skops"
    dump(model, path)
    print(f"trained {model}; training accuracy {model.score(x, y):.3f}")
    return path


def bearer(token: str) -> dict[str, str]:
    """How any client authenticates to the management API and to the gateway of `conveyor up`."""
    return {"Authorization": f"Bearer {token}"}


def serving(api: str, version: str, headers: dict[str, str]) -> bool:
    """Two ready replicas of ``version`` only, and the gateway routing to them (current table applied)."""
    rows = httpx.get(f"{api}/api/v1/replicas", timeout=5, headers=headers).json()["replicas"]
    if not (len(rows) == 2 and all(r["state"] == "ready" and r["version"] == version for r in rows)):
        return False
    deployment = httpx.get(f"{api}/api/v1/deployments/iris", timeout=5, headers=headers).json()
    return bool(deployment["routed"])


def wait_for(check: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what}: not within {timeout:.0f}s")


class Traffic(threading.Thread):
    """A client sending one request after another until stopped, counting answers per model version."""

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.headers = url, body, headers
        self.versions: dict[str, int] = {}
        self.failed = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self._stop_event.is_set():
                try:
                    r = client.post(self.url, json=self.body)
                    if r.status_code == 200:
                        v = r.json()["model_version"]
                        self.versions[v] = self.versions.get(v, 0) + 1
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1

    def stop(self) -> str:
        self._stop_event.set()
        self.join()
        counts = ", ".join(f"version {v}: {n}" for v, n in sorted(self.versions.items()))
        return f"{sum(self.versions.values())} answered ({counts}), {self.failed} failed"


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="conveyor-demo-"))
    port, api_port = free_port(), free_port()
    gateway, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    env = {**os.environ, "CONVEYOR_HOME": str(work / "home"), "CONVEYOR_URL": api}
    x, _ = load_iris(return_X_y=True)
    np.save(work / "sample.npy", x[::5].astype(np.float32))

    step("Train a scikit-learn pipeline on the iris data set and register it as iris@production")
    v1 = train(work, 1.0)
    sample = str(work / "sample.npy")
    run("models", "register", "iris", str(v1), "--sample", sample, "--alias", "production", env=env)

    step("Deploy it: conveyor up -f examples/iris.yaml (control plane, gateway, replicas)")
    print(SPEC.read_text().strip())
    up = subprocess.Popen(
        [CONVEYOR, "up", "-f", str(SPEC), "--port", str(port), "--api-port", str(api_port)], env=env
    )
    try:
        # The control plane writes an admin token there (mode 0600) on its first start; the CLI sends it by
        # itself to a stack on this machine, the demo's own API calls send it as any HTTP client would.
        admin_token = work / "home" / "admin.token"
        wait_for(lambda: up.poll() is None and admin_token.exists(), "the control plane's admin token")
        admin = bearer(admin_token.read_text().strip())
        wait_for(lambda: up.poll() is None and serving(api, "1", admin), "2 replicas of version 1")
        run("get", "deployments", env=env)

        step("Make a token for a client application: inference only (role predictor)")
        print(f"the control plane wrote the admin token to {admin_token}; a client gets its own token:")
        client = bearer(output_of("tokens", "create", "demo-client", "--role", "predictor", env=env).strip())
        print('every request sends it: curl -H "Authorization: Bearer $TOKEN" ...')

        step(f"Send real requests to {gateway}/v2/models/iris/infer")
        rows = x[[0, 60, 120]].astype(np.float32)
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        infer = f"{gateway}/v2/models/iris/infer"
        refused = httpx.post(infer, json=body, timeout=10)
        print(f"without a token: {refused.status_code} {refused.json()['error']}")
        # A new token reaches every gateway within a second (the control plane pushes the token set).
        wait_for(
            lambda: httpx.post(infer, json=body, timeout=10, headers=client).status_code == 200,
            "the gateway accepting the new token",
            timeout=10,
        )
        answer = httpx.post(infer, json=body, timeout=10, headers=client).json()
        label = next(o for o in answer["outputs"] if o["datatype"] == "INT64")
        names = load_iris().target_names
        print(f"model {answer['model_name']} version {answer['model_version']}:")
        for row, y in zip(rows.tolist(), label["data"], strict=True):
            print(f"  {[round(v, 2) for v in row]} -> {names[y]}")
        run("predict", "iris", "--url", gateway, "--data", "[[6.3, 3.3, 6.0, 2.5]]", env=env)

        step("Roll out version 2 under constant traffic: move the alias, apply the same file again")
        traffic = Traffic(infer, body, client)
        traffic.start()
        v2 = train(work, 0.05)
        run("models", "register", "iris", str(v2), "--sample", sample, "--alias", "production", env=env)
        run("apply", "-f", str(SPEC), env=env)
        wait_for(lambda: serving(api, "2", admin), "2 replicas of version 2")
        print(f"traffic during the rollout: {traffic.stop()}")

        step("Roll back to the previous revision, again under traffic")
        traffic = Traffic(infer, body, client)
        traffic.start()
        run("rollback", "iris", env=env)
        wait_for(lambda: serving(api, "1", admin), "2 replicas of version 1")
        print(f"traffic during the rollback: {traffic.stop()}")
        run("history", "iris", env=env)
        run("get", "replicas", env=env)

        step("Done: stopping the stack (the gateway drains, then the replicas)")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"conveyor up exited with {up.returncode}")
    return 0 if up.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
