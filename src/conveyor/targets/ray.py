"""The ``ray`` target: each replica of a ``target: ray`` deployment is a named, detached Ray actor
(targets/ray_replica.py) running Conveyor's own replica on the node Ray placed it on, reached by gateways
over the channel on ``tcp:NODE_IP:PORT``.

Plain actors, not Ray Serve: Conveyor's gateway already routes, splits traffic for rollouts, retries and
holds requests, and the control plane already scales from what gateways report; Ray Serve would add its
own HTTP proxy and router (another hop, and a second traffic splitter deciding against the first). Ray
decides where each actor runs (``SPREAD``: one version's replicas on different nodes when it can) and how
many CPUs it holds; Conveyor decides how many there are. Every Ray call of the control plane is here, and
none blocks for long: replies are ``ObjectRef``s looked at with ``ray.wait(timeout=0)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import errors
from conveyor.digests import read_artifact
from conveyor.security.encryption import cipher_from
from conveyor.settings import Settings
from conveyor.targets.base import Launch, ReplicaRecord, replica_id
from conveyor.targets.ray_replica import MODEL_FILE, ReplicaActor

log = logging.getLogger("conveyor.targets.ray")
RAY = "ray"
KEEPALIVE_S = 1.0
END_GRACE_S = 5.0
"""After ``stop(drain=False)`` asked the actor to SIGKILL its replica: how long before the actor is killed."""
ADOPT_TIMEOUT_S = 5.0
KEEP_GONE = 100
MAX_CONCURRENCY = 8
"""Threads of each actor: ``wait`` holds one for the replica's life; start, drain, touch use the others."""


def ray_problem(settings: Settings) -> str | None:
    """What this control plane lacks to run ``target: ray`` (the address, the ``ray`` extra), or None;
    asked at apply, without connecting."""
    if not settings.ray_address:
        return (
            "the ray target needs a Ray cluster: set CONVEYOR_RAY_ADDRESS to its head (HOST:PORT) on the "
            "control plane (docs/ray.md)"
        )
    if importlib.util.find_spec("ray") is None:
        return "the ray target needs the ray extra on the control plane: pip install 'conveyor[ray]'"
    return None


def ray_target(settings: Settings) -> RayTarget:
    """The Ray target of a control plane, connected to ``CONVEYOR_RAY_ADDRESS``: InvalidInput saying what
    is missing, Unavailable when no cluster answers there."""
    if (problem := ray_problem(settings)) is not None:
        raise errors.InvalidInput(problem)
    return RayTarget(settings)


@dataclass(slots=True)
class _Actor:
    """What the control plane keeps of one replica actor."""

    handle: Any
    started: Any | None
    """The ``start`` call's reply (address, node, pid); None for an adopted actor."""
    done: Any
    """The ``wait`` call's reply: ready when the replica exited or the actor died."""
    sha256: str = ""
    address: str | None = None
    outcome: dict[str, Any] | None = None
    """``wait``'s answer once ready (``code``, ``log``); ``{"code": None}`` when the actor died."""
    end_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RayTarget:
    """Replicas as Ray actors on the cluster at ``settings.ray_address`` (docs/ray.md)."""

    kind = RAY

    def __init__(self, settings: Settings) -> None:
        self._ray: Any = None  # the module, imported by the connecting thread (2.5 s here)
        self._remote: Any = None
        self._settings = settings
        self._namespace = settings.ray_namespace
        self._actors: dict[str, _Actor] = {}
        self._artifacts: dict[str, Any] = {}
        """sha256 → the artifact's bytes in Ray's object store, put once for all replicas of a version."""
        self._cipher = cipher_from(settings.artifact_key, settings.artifact_key_file)
        self._last_keepalive = 0.0
        self._gone: dict[str, dict[str, Any]] = {}
        """The exit status and log of the last ``KEEP_GONE`` replicas forgotten, oldest first."""
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._connecting: threading.Thread | None = None
        self._connect()

    def _connect(self) -> None:
        """Import Ray and connect in a thread of its own: both take seconds, which the control plane's loop
        (and the leader lease it renews) must not wait for; and ``ray.init`` on the main thread would replace
        the control plane's SIGTERM handler."""
        if self._connected.is_set() or (self._connecting is not None and self._connecting.is_alive()):
            return
        self._connect_error = None
        self._connecting = threading.Thread(target=self._init, name="ray-connect", daemon=True)
        self._connecting.start()

    def _init(self) -> None:
        try:
            import ray

            # Off the main thread ray.init leaves SIGTERM alone, which is what is wanted, and says so.
            logging.getLogger("ray._private.worker").addFilter(_NotSigterm())
            self._remote = ray.remote(ReplicaActor)
            self._ray = ray
            if not ray.is_initialized():
                ray.init(
                    address=self._settings.ray_address,
                    namespace=self._namespace,
                    log_to_driver=False,  # a replica's log stays on its node; the control plane's is its own
                    logging_level=logging.WARNING,
                )
        except Exception as exc:  # no cluster there, a refused token, ...
            self._connect_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("no Ray cluster answers at %s: %s", self._settings.ray_address, self._connect_error)
            return
        log.info("connected to the Ray cluster at %s", self._settings.ray_address)
        self._connected.set()

    def _ready_to_call(self, wait_s: float) -> None:
        """Unavailable unless connected within ``wait_s`` (a failed attempt is tried again)."""
        if self._connected.wait(wait_s):
            return
        why = self._connect_error
        self._connect()
        raise errors.Unavailable(
            f"Ray cluster at {self._settings.ray_address}: "
            + (f"cannot connect: {why}" if why else "still connecting")
        )

    # -- Target ---------------------------------------------------------------------------------------

    def create(self, launch: Launch) -> ReplicaRecord:
        self._ready_to_call(0.0)  # the reconciler tries again after its backoff
        rid = replica_id(launch)
        name = f"conveyor-{rid}"
        threads = int(launch.options.get("intra_op_threads") or 0)
        handle: Any = self._remote.options(
            name=name,
            namespace=self._namespace,
            lifetime="detached",  # outlives this control plane, which adopts it again (by name) on restart
            num_cpus=max(1, threads),
            max_restarts=0,  # a replacement is the reconciler's to start (with its backoff and its events)
            max_concurrency=MAX_CONCURRENCY,
            scheduling_strategy="SPREAD",
        ).remote(rid, self._settings.replica_orphan_timeout_s)
        files, args = replica_arguments(launch, rid)
        started = handle.start.remote(
            self._artifact(launch),
            files,
            args,
            dict(launch.env),
            self._settings.replica_start_timeout_s,
        )
        self._actors[rid] = _Actor(handle, started, handle.wait.remote(), launch.sha256)
        log.info("replica %s: actor %s created on the Ray cluster", rid, name)
        return ReplicaRecord(
            id=rid,
            deployment=launch.deployment,
            revision=launch.revision,
            template=launch.template,
            model=launch.model,
            version=launch.version,
            address="",
            pid=0,
            pid_start="",
            started_at=time.time(),
            target=RAY,
            details={"actor": name, "namespace": self._namespace},
        )

    def endpoint(self, record: ReplicaRecord) -> str | None:
        actor = self._actors.get(record.id)
        if actor is None:
            return record.address or None
        if actor.address is None and actor.started is not None and self._ready(actor.started):
            try:
                reply = self._ray.get(actor.started, timeout=1.0)
            except Exception as exc:  # the actor died, or start failed: ``done`` says it is gone
                log.warning("replica %s did not start: %s", record.id, str(exc).splitlines()[0])
                actor.started = None
                return None
            actor.started = None
            actor.address = reply.get("address")
            actor.details = reply
            if actor.address:
                log.info("replica %s listens on %s (node %s)", record.id, actor.address, reply.get("node"))
        return actor.address

    def stop(self, record: ReplicaRecord, *, drain: bool) -> None:
        actor = self._actors.get(record.id)
        if actor is None:
            return
        if drain:
            actor.handle.drain.remote()
        else:  # SIGKILL of the replica by its actor, and the actor itself killed if it does not answer
            actor.handle.end.remote()
            actor.end_at = time.monotonic() + END_GRACE_S

    def alive(self, record: ReplicaRecord) -> bool:
        actor = self._actors.get(record.id)
        if actor is None:
            return False
        if actor.outcome is not None:
            return False
        if self._ready(actor.done):
            return False
        if actor.end_at is not None and time.monotonic() > actor.end_at:
            self._kill(actor)
            actor.end_at = None
        return True

    def exit_code(self, record: ReplicaRecord) -> int | None:
        outcome = self._outcome(record)
        return None if outcome is None else outcome.get("code")

    def log_tail(self, record: ReplicaRecord, lines: int = 5) -> str:
        outcome = self._outcome(record)
        if outcome is None or not outcome.get("log"):
            return ""
        return " | ".join(str(outcome["log"]).split(" | ")[-lines:])

    def adopt(self, record: ReplicaRecord) -> bool:
        name = record.details.get("actor")
        if not name:
            return False
        self._ready_to_call(ADOPT_TIMEOUT_S * 6)
        try:
            handle = self._ray.get_actor(name, namespace=record.details.get("namespace", self._namespace))
            described = self._ray.get(handle.describe.remote(), timeout=ADOPT_TIMEOUT_S)
        except Exception as exc:  # gone (ValueError), dead, or not answering
            log.info("replica %s: actor %s not adopted: %s", record.id, name, str(exc).splitlines()[0])
            return False
        if not described.get("running"):
            with contextlib.suppress(Exception):
                self._ray.kill(handle)
            return False
        handle.touch.remote()
        self._actors[record.id] = _Actor(handle, None, handle.wait.remote(), address=record.address)
        return True

    def keepalive(self) -> None:
        now = time.monotonic()
        if now - self._last_keepalive < KEEPALIVE_S:
            return
        self._last_keepalive = now
        for actor in self._actors.values():
            if actor.outcome is None:
                actor.handle.touch.remote()

    def forget(self, record: ReplicaRecord) -> None:
        outcome = self._outcome(record)
        actor = self._actors.pop(record.id, None)
        if actor is None:
            return
        if outcome is not None:  # the reconciler reads its status and log once it is forgotten
            self._gone[record.id] = outcome
            while len(self._gone) > KEEP_GONE:
                self._gone.pop(next(iter(self._gone)))
        self._kill(actor)  # its replica exited; the actor (detached) would otherwise stay
        if actor.sha256 and not any(a.sha256 == actor.sha256 for a in self._actors.values()):
            self._artifacts.pop(actor.sha256, None)  # no replica of that version left: free the object

    async def stop_all(self, records: Sequence[ReplicaRecord], timeout_s: float) -> None:
        """Drain all, wait for every replica's exit together (``ray.wait`` in a thread), kill the actors."""
        for r in records:
            self.stop(r, drain=True)
        done = [a.done for r in records if (a := self._actors.get(r.id)) is not None and a.outcome is None]
        if done:
            await asyncio.to_thread(self._ray.wait, done, num_returns=len(done), timeout=timeout_s)
        for r in records:
            self.forget(r)

    def release(self) -> None:
        self._artifacts.clear()

    # -- inside ----------------------------------------------------------------------------------------

    def _ready(self, ref: Any) -> bool:
        ready, _ = self._ray.wait([ref], timeout=0, fetch_local=False)
        return bool(ready)

    def _outcome(self, record: ReplicaRecord) -> dict[str, Any] | None:
        actor = self._actors.get(record.id)
        if actor is None:
            return self._gone.get(record.id)
        if actor.outcome is None and self._ready(actor.done):
            try:
                actor.outcome = dict(self._ray.get(actor.done, timeout=1.0))
            except Exception:  # the actor died (ray.kill, its node lost): killed, as a SIGKILL is
                actor.outcome = {"code": None, "log": ""}
        return actor.outcome

    def _kill(self, actor: _Actor) -> None:
        with contextlib.suppress(Exception):  # already dead
            self._ray.kill(actor.handle, no_restart=True)

    def _artifact(self, launch: Launch) -> Any:
        """The version's bytes in the object store, verified here against its digest (the replica checks
        them again as it loads them)."""
        ref = self._artifacts.get(launch.sha256)
        if ref is None:
            data = read_artifact(
                f"{launch.model}:{launch.version}", launch.model_file, launch.sha256, self._cipher
            )
            ref = self._artifacts[launch.sha256] = self._ray.put(data)
        return ref


def replica_arguments(launch: Launch, rid: str) -> tuple[dict[str, bytes], list[str]]:
    """The files the actor writes beside the model, and the replica's arguments (``{dir}``, ``{ip}``: the
    actor's folder and node): the options of a local replica, a monitor document travelling as a file."""
    files: dict[str, bytes] = {}
    ref = f"{launch.deployment}:{launch.version}"
    args = ["--model", f"{ref}={{dir}}/{MODEL_FILE}", "--channel", "tcp:{ip}:0", "--replica-id", rid]
    for flag, value in launch.options.items():
        if value is None:
            continue
        if flag == "monitor":  # NAME:VERSION=FILE on this machine: the file travels with the call
            name, _, path = str(value).partition("=")
            files["monitor.json"] = _read(path)
            value = f"{name}={{dir}}/monitor.json"
        args += [f"--{flag.replace('_', '-')}", str(value)]
    return files, args


class _NotSigterm(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SIGTERM handler is not set")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise errors.Unavailable(f"cannot read {path}: {exc.strerror or exc}") from None
