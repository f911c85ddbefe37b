"""The servers under test, one class per kind: start one on a free port, wait until it answers, stop it.

Every server is a separate process (its own session) on 127.0.0.1, serving one model. ``ready`` measures the
cold start: from process start to the first correct inference.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import procs
import venvs
import wire
from check import check_one
from models import BenchModel

ROOT = Path(__file__).resolve().parent.parent
CONVEYOR = Path(sys.executable).parent / "conveyor"


@functools.cache
def _help(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, env=_env())
    return done.stdout + done.stderr


def launcher_help() -> str:
    return _help(sys.executable, "-m", "conveyor.server", "--help")


def serve_help() -> str:
    return _help(str(CONVEYOR), "serve", "--help")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


class Server:
    """Base: subclasses give the command line; the base runs it, waits for readiness and stops it."""

    peer: str | None = None  # the venv under bench/.venvs this server runs from (None: Conveyor's own .venv)
    wire_format = wire.V2
    ready_timeout_s = 90.0

    def __init__(self, note: str = "") -> None:
        self.note = note
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.port = 0
        self.log: Path | None = None

    # -- what subclasses say --
    def unavailable(self) -> str:
        """Why this server cannot run here ('' when it can): a missing flag, for instance."""
        return ""

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def path(self, model: BenchModel) -> str:
        return f"/v2/models/{model.name}/infer"

    def versions(self) -> dict[str, str]:
        return {}

    def auth_headers(self) -> dict[str, str]:
        """The headers a client of this server needs to be let in (a bearer token); none for most."""
        return {}

    # -- lifecycle --
    def url(self, model: BenchModel) -> str:
        return f"http://127.0.0.1:{self.port}{self.path(model)}"

    def start(self, model: BenchModel, workdir: Path, log: Path) -> None:
        workdir = workdir.resolve()
        self.port = procs.free_port()
        argv, env = self.command(model, self.port, workdir)
        self.log = log
        self.started = time.monotonic()
        self.proc = procs.start(argv, env, log, cwd=workdir)

    def ready(self, model: BenchModel) -> float:
        """Seconds from process start to the first correct answer; raises if the server dies or times out."""
        assert self.proc is not None
        deadline = self.started + self.ready_timeout_s
        last = ""
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"exited with code {self.proc.returncode}: {self.log_tail()}")
                last = check_one(client, self.url(model), self.wire_format, model, 0, self.auth_headers())
                if not last:
                    return time.monotonic() - self.started
                if last.startswith("wrong"):
                    raise RuntimeError(f"first answer is wrong: {last}")
                time.sleep(0.05)
        raise RuntimeError(f"not ready after {self.ready_timeout_s:.0f} s ({last}): {self.log_tail()}")

    def stop(self) -> list[int]:
        killed = procs.stop(self.proc, set()) if self.proc is not None else []
        self.proc = None
        return killed

    def log_tail(self, lines: int = 6) -> str:
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip()[:200] for line in text[-lines:])


class ConveyorReplica(Server):
    """A Conveyor replica straight from the ONNX file: ``python -m conveyor.server``."""

    def __init__(self, max_batch_size: int | None = None, note: str = "") -> None:
        super().__init__(note)
        self.max_batch_size = max_batch_size

    def unavailable(self) -> str:
        if self.max_batch_size is not None and "--max-batch-size" not in launcher_help():
            return "the launcher has no --max-batch-size yet (dynamic batcher not landed)"
        return ""

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "conveyor.server", "--model", f"{model.name}={model.path}"]
        argv += ["--port", str(port)]
        if self.max_batch_size is not None:
            argv += ["--max-batch-size", str(self.max_batch_size)]
        return argv, _env(CONVEYOR_HOME=str(workdir / "conveyor-home"))


class ConveyorGateway(Server):
    """``conveyor serve FILE --replicas N [--placement P] [EXTRA...]``: clients talk to the gateway."""

    def __init__(
        self,
        replicas: int,
        placement: str | None = None,
        note: str = "",
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(note)
        self.replicas = replicas
        self.placement = placement
        self.extra = extra
        self.env = env or {}  # CONVEYOR_* settings of this server

    def unavailable(self) -> str:
        missing = [
            f for f in ("--replicas", "--placement" if self.placement else "") if f and f not in serve_help()
        ]
        return f"`conveyor serve` has no {', '.join(missing)} yet (gateway not landed)" if missing else ""

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [
            str(CONVEYOR),
            "serve",
            str(model.path),
            "--port",
            str(port),
            "--replicas",
            str(self.replicas),
        ]
        if self.placement:
            argv += ["--placement", self.placement]
        argv += self.extra
        return argv, _env(CONVEYOR_HOME=str(workdir / "conveyor-home"), **self.env)


class ConveyorUp(Server):
    """``conveyor up -f SPEC``: the model registered, a Deployment of N replicas, clients on the gateway.

    The control plane runs too (reconciler, autoscaler samples, gateway reports), so this row is what a
    deployment costs over ``conveyor serve --replicas N``. Its gateway wants a bearer token unless the
    Deployment is ``public``: clients send the admin token ``conveyor up`` writes under its home.
    """

    def __init__(
        self,
        replicas: int,
        note: str = "",
        batching: dict[str, int] | None = None,
        public: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(note)
        self.env = env or {}  # CONVEYOR_* settings of every process of the stack
        self.replicas = replicas
        self.batching = batching or {}  # spec.batching fields, e.g. {"maxQueueSize": 4}
        self.public = public  # spec.public: callers need no token
        self.home: Path | None = None
        self._token: str | None = None

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <admin token>``, read once from the home (the control plane writes it on
        its first start, before the gateway answers); nothing for a public Deployment, or before the file
        is there."""
        if self.public or self.home is None:
            return {}
        if self._token is None:
            self._token = admin_token(self.home)
        return {"authorization": f"Bearer {self._token}"} if self._token else {}

    def unavailable(self) -> str:
        return "" if "Usage: conveyor up" in _help(str(CONVEYOR), "up", "--help") else "no `conveyor up` yet"

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        spec = workdir / f"{model.name}-deployment.yaml"
        spec.write_text(
            "apiVersion: conveyor.dev/v1\nkind: Deployment\n"
            f"metadata:\n  name: {model.name}\nspec:\n  model: {model.name}:1\n  replicas: {self.replicas}\n"
            + ("  public: true\n" if self.public else "")
            + ("  batching:\n" if self.batching else "")
            + "".join(f"    {k}: {v}\n" for k, v in self.batching.items())
        )
        home = workdir / "conveyor-up-home"
        self.home, self._token = home, None  # one server object serves each model in turn, each its own home
        script = (
            f"{CONVEYOR} models register {model.name} {model.path} >/dev/null && "
            f"exec {CONVEYOR} up -f {spec} --port {port} --api-port {procs.free_port()}"
        )
        return ["sh", "-c", script], _env(CONVEYOR_HOME=str(home), **self.env)


def admin_token(home: Path) -> str | None:
    """The admin token `conveyor up` wrote under ``home`` on its first start; None while there is none."""
    from conveyor.settings import Settings

    try:
        return Settings(home=home).admin_token_file.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class MLServer(Server):
    """Seldon MLServer with the custom runtime in bench/peers/mlserver, optionally with adaptive batching."""

    peer = "mlserver"

    def __init__(
        self,
        max_batch_size: int = 0,
        max_batch_time_s: float = 0.0,
        parallel_workers: int = 0,
        note: str = "",
    ) -> None:
        super().__init__(note)
        self.max_batch_size = max_batch_size
        self.max_batch_time_s = max_batch_time_s
        self.parallel_workers = parallel_workers

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        root = workdir / "mlserver"
        (root / model.name).mkdir(parents=True, exist_ok=True)
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": procs.free_port(),
            "metrics_port": procs.free_port(),
            "parallel_workers": self.parallel_workers,
            "debug": False,  # MLServer's default (True) writes an access log line per request
        }
        model_settings: dict[str, object] = {
            "name": model.name,
            "implementation": "onnx_runtime.OnnxModel",
            "parameters": {"uri": str(model.path)},
        }
        if self.max_batch_size > 1:
            model_settings |= {"max_batch_size": self.max_batch_size, "max_batch_time": self.max_batch_time_s}
        (root / "settings.json").write_text(json.dumps(settings, indent=2))
        (root / model.name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        argv = [str(venvs.VENVS / "mlserver" / "bin" / "mlserver"), "start", str(root)]
        return argv, _env(PYTHONPATH=str(venvs.PEERS / "mlserver"))

    def versions(self) -> dict[str, str]:
        return {"mlserver": venvs.version("mlserver", "mlserver")}


class BentoML(Server):
    """BentoML serving bench/peers/bentoml/service.py: its own JSON API at /infer (not V2)."""

    peer = "bentoml"
    wire_format = wire.NAMED_JSON

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [str(venvs.VENVS / "bentoml" / "bin" / "bentoml"), "serve", "service:OnnxService"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--working-dir", str(venvs.PEERS / "bentoml")]
        env = _env(
            BENCH_MODEL=str(model.path),
            BENTOML_DO_NOT_TRACK="True",
            BENTOML_HOME=str(workdir / "bentoml-home"),
        )
        return argv, env

    def path(self, model: BenchModel) -> str:
        return "/infer"

    def versions(self) -> dict[str, str]:
        return {"bentoml": venvs.version("bentoml", "bentoml")}


class RayServe(Server):
    """Ray Serve (local Ray, num_cpus=2) running bench/peers/ray/app.py: V2-like JSON on a plain route."""

    peer = "ray"
    ready_timeout_s = 180.0

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [str(venvs.python("ray")), str(venvs.PEERS / "ray" / "app.py")]
        argv += ["--model", str(model.path), "--port", str(port)]
        return argv, _env(RAY_USAGE_STATS_ENABLED="0")

    def versions(self) -> dict[str, str]:
        return {"ray": venvs.version("ray", "ray")}


class Lean(Server):
    """The lean Python reference: bench/peers/lean/app.py (Starlette + uvicorn + orjson + ONNX Runtime).

    The strong reference by default (inference inline, one intra-op thread, no spinning); ``binary`` takes
    V2 binary tensor requests; ``threadpool`` is the earlier, weaker app (thread pool, ORT defaults).
    """

    peer = "lean"

    def __init__(self, binary: bool = False, threadpool: bool = False, note: str = "") -> None:
        super().__init__(note)
        self.binary = binary
        self.threadpool = threadpool

    def command(self, model: BenchModel, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [str(venvs.python("lean")), str(venvs.PEERS / "lean" / "app.py")]
        argv += ["--model", str(model.path), "--port", str(port)]
        argv += ["--binary"] if self.binary else []
        argv += ["--threadpool"] if self.threadpool else []
        return argv, _env()

    def versions(self) -> dict[str, str]:
        return {"starlette": venvs.version("lean", "starlette"), "uvicorn": venvs.version("lean", "uvicorn")}
