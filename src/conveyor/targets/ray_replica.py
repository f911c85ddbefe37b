"""The Ray actor of one replica: runs ``python -m conveyor.server --channel tcp:NODE_IP:0`` (the same
runtime and batcher as a local replica) on the node Ray placed the actor on, and answers for it.

The actor is a supervisor, not the server: the replica keeps its own process, so its SIGTERM drain, its
digest check (exit ``EXIT_DATA_LOSS``) and its ONNX Runtime threads are those of every target, and killing
the actor (``ray.kill``) makes the replica drain rather than drop what it holds (it gets SIGTERM when the
thread that started it dies, and watches its parent pid besides). A detached actor outlives its control
plane: it drains and exits once nobody calls ``touch`` for ``orphan_after_s``.

This module imports no Ray: targets/ray.py wraps the class with ``ray.remote``; the nodes import it by name,
so every node needs this Conveyor version installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

READY_LINE = "conveyor replica listening on "
"""What ``python -m conveyor.server`` prints once its channel accepts (server/__main__.py)."""
MODEL_FILE = "model.onnx"
DRAIN_S = 30.0
"""How long an orphaned replica may take to finish its in-flight requests before the actor exits anyway."""
LOG_BYTES = 16_384
"""How much of the end of the replica's output ``log_tail`` reads."""


class ReplicaActor:
    """One replica process on this node; each method returns promptly except ``wait`` (its own thread)."""

    def __init__(self, replica_id: str, orphan_after_s: float) -> None:
        self._id = replica_id
        self._dir = Path(tempfile.mkdtemp(prefix=f"conveyor-ray-{replica_id}-"))
        self._log = self._dir / "replica.log"
        self._orphan_after_s = orphan_after_s
        self._touched = time.monotonic()
        self._proc: subprocess.Popen[bytes] | None = None
        self._spawned = threading.Event()
        self._exited = threading.Event()
        self._code: int | None = None
        self._asked: signal.Signals | None = None
        """A stop asked before the replica ran (a starting replica drained): sent as soon as it runs."""
        threading.Thread(target=self._watch_orphan, name="orphan-watch", daemon=True).start()

    # -- what targets/ray.py calls -------------------------------------------------------------------

    def start(
        self,
        model: bytes,
        files: Mapping[str, bytes],
        args: list[str],
        env: Mapping[str, str],
        timeout_s: float,
    ) -> dict[str, Any]:
        """Write the model (and ``files``) here, start the replica with ``args`` (``{dir}``: this actor's
        folder, ``{ip}``: this node's address as Ray knows it) and wait until it listens, it exits or
        ``timeout_s`` passes. Returns ``address`` (None unless it listens), ``node`` and ``pid``."""
        try:
            (self._dir / MODEL_FILE).write_bytes(model)
            for name, data in files.items():
                (self._dir / Path(name).name).write_bytes(data)
            ip = _node_ip()
            argv = [a.replace("{dir}", str(self._dir)).replace("{ip}", ip) for a in args]
            full = [sys.executable, "-m", "conveyor.server", *argv, "--parent-pid", str(os.getpid())]
            child_env = {**os.environ, "CONVEYOR_HOME": str(self._dir / "home"), **env}
            threading.Thread(target=self._run, args=(full, child_env), name="replica", daemon=True).start()
            self._spawned.wait(10.0)
        except Exception:
            self._exited.set()  # wait() answers: nothing runs
            raise
        deadline = time.monotonic() + timeout_s
        address = None
        while address is None and not self._exited.is_set() and time.monotonic() < deadline:
            address = _ready_address(self._log)
            if address is None:
                time.sleep(0.05)
        if address is not None:  # loaded: the replica holds the bytes; no plaintext copy stays on the node
            self._remove_files()
        pid = None if self._proc is None else self._proc.pid
        return {"address": address, "node": ip, "pid": pid, "node_id": _node_id()}

    def wait(self) -> dict[str, Any]:
        """Block until the replica exits: its exit status (negative: a signal) and the end of its log."""
        self._exited.wait()
        return {"code": self._code, "log": self.log_tail()}

    def drain(self) -> None:
        """Stop accepting, finish in-flight requests, exit (the replica's SIGTERM)."""
        self._signal(signal.SIGTERM)

    def end(self) -> None:
        """End the replica now (one that does not work: a hung loop drains nothing)."""
        self._signal(signal.SIGKILL)

    def touch(self) -> None:
        """The control plane lives."""
        self._touched = time.monotonic()

    def describe(self) -> dict[str, Any]:
        """Whether the replica runs, its pid and the Ray node it runs on: what adoption checks."""
        proc = self._proc
        running = proc is not None and proc.poll() is None
        return {"id": self._id, "running": running, "pid": proc and proc.pid, "node_id": _node_id()}

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self._log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    # -- inside ----------------------------------------------------------------------------------------

    def _run(self, argv: list[str], env: dict[str, str]) -> None:
        # This thread starts the replica and lives as long as it does: the replica's PR_SET_PDEATHSIG
        # (server/channel.py) fires when the thread that forked it ends, so a short-lived thread would
        # SIGTERM a healthy replica. The actor's death (ray.kill) ends it, which is what drains the replica.
        try:
            with open(self._log, "ab") as out:
                self._proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
            if self._asked is not None:
                self._signal(self._asked)
            self._spawned.set()
            self._code = self._proc.wait()
        finally:
            shutil.rmtree(self._dir / "home", ignore_errors=True)
            self._remove_files()
            self._spawned.set()
            self._exited.set()

    def _remove_files(self) -> None:
        """Everything but the replica's log (read after it exits, and on the node by whoever looks)."""
        for path in self._dir.iterdir():
            if path != self._log and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()

    def _signal(self, sig: signal.Signals) -> None:
        if self._asked != signal.SIGKILL:
            self._asked = sig
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _watch_orphan(self) -> None:
        while not self._exited.is_set():
            time.sleep(min(1.0, self._orphan_after_s / 4))
            if time.monotonic() - self._touched > self._orphan_after_s:
                break
        else:
            return
        print(f"no control plane for {self._orphan_after_s:g}s: draining {self._id}", file=sys.stderr)
        self.drain()
        if not self._exited.wait(DRAIN_S):
            self.end()
            self._exited.wait(5.0)
        os._exit(0)  # a detached actor with nobody left to call ray.kill on it


def _ready_address(log: Path) -> str | None:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(READY_LINE):
            return line[len(READY_LINE) :].strip()
    return None


def _node_ip() -> str:
    """This node's address as the cluster records it (``ray start --node-ip-address``), which gateways
    reach it at; the address Ray's own guess picks may be another interface's."""
    import ray

    untyped: Any = ray  # ray.nodes and ray.util carry no annotations
    node_id = _node_id()
    for node in untyped.nodes():
        if node.get("NodeID") == node_id and node.get("NodeManagerAddress"):
            return str(node["NodeManagerAddress"])
    return str(untyped.util.get_node_ip_address())


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()
