"""The ``ray`` target: each replica of a ``target: ray`` deployment is a named, detached Ray actor
(targets/ray_replica.py) running Conveyor's own replica on the node Ray placed it on, reached by gateways
over the channel on ``tcp:NODE_IP:PORT``.

Plain actors, not Ray Serve: Conveyor's gateway already routes, splits traffic for rollouts, retries and
holds requests, and the control plane already scales from what gateways report; Ray Serve would add its
own HTTP proxy and router (another hop, and a second traffic splitter deciding against the first). Ray
decides where each actor runs (``SPREAD``: one version's replicas on different nodes when it can) and how
many CPUs it holds; Conveyor decides how many there are. Every Ray call of the control plane is here, and
none blocks the control plane's loop: replies are ``ObjectRef``s looked at with ``ray.wait(timeout=0)``, and
what takes seconds (a model read and put in the object store, an actor created, or found again at adoption)
runs in a thread of its own whose result the next call on the loop picks up.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conveyor import errors
from conveyor.digests import EXIT_DATA_LOSS, read_artifact
from conveyor.security.encryption import cipher_from
from conveyor.settings import Settings
from conveyor.targets.base import Launch, ReplicaRecord, new_record, replica_id
from conveyor.targets.ray_replica import MODEL_FILE, ReplicaActor

log = logging.getLogger("conveyor.targets.ray")
T = TypeVar("T")
RAY = "ray"
KEEPALIVE_S = 1.0
END_GRACE_S = 5.0
"""After ``stop(drain=False)`` asked the actor to SIGKILL its replica: how long before the actor is killed."""
ADOPT_TIMEOUT_S = 5.0
"""How long an actor found again at adoption may take to answer ``describe``."""
ADOPT_CONNECT_S = 30.0
"""How long an adoption waits for the cluster's connection (begun at the control plane's start)."""
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

    handle: Any | None
    """None until ``making`` is over."""
    started: Any | None
    """The ``start`` call's reply (address, node, pid); None for an adopted actor."""
    done: Any | None
    """The ``wait`` call's reply: ready when the replica exited or the actor died."""
    sha256: str = ""
    address: str | None = None
    outcome: dict[str, Any] | None = None
    """``wait``'s answer once ready (``code``, ``log``); ``{"code": None}`` when the actor died."""
    end_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    making: Future[tuple[Any, Any, Any]] | None = None
    """The thread creating the actor (or finding it again, at adoption): ``(handle, started, done)``."""
    deadline: float = 0.0
    """When ``making`` has taken too long (time.monotonic())."""
    late: str = ""
    """The log of a replica whose actor ``making`` did not make by ``deadline``."""


class RayTarget:
    """Replicas as Ray actors on the cluster at ``settings.ray_address`` (docs/ray.md)."""

    kind = RAY

    def __init__(self, settings: Settings) -> None:
        self._ray: Any = None  # the module, imported by the connecting thread (2.5 s here)
        self._remote: Any = None
        self._settings = settings
        self._namespace = settings.ray_namespace
        self._actors: dict[str, _Actor] = {}
        self._artifacts: dict[str, Future[Any]] = {}
        """sha256 → the artifact's bytes in Ray's object store (an ObjectRef), put once for all replicas of a
        version by the first thread that needs them; the others wait on the Future."""
        self._artifacts_lock = threading.Lock()
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

    def _unavailable(self) -> errors.Unavailable:
        why = self._connect_error
        return errors.Unavailable(
            f"Ray cluster at {self._settings.ray_address}: "
            + (f"cannot connect: {why}" if why else "still connecting")
        )

    def _ready_to_call(self) -> None:
        """Unavailable unless connected (a failed attempt is tried again)."""
        if self._connected.is_set():
            return
        error = self._unavailable()
        self._connect()
        raise error

    def _await_connection(self, timeout_s: float) -> None:
        """In a thread, not on the loop: Unavailable unless connected within ``timeout_s`` (sooner when the
        attempt under way failed)."""
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(0.1):
            connecting = self._connecting
            failed = connecting is None or not connecting.is_alive()
            if (failed or time.monotonic() > deadline) and not self._connected.is_set():
                raise self._unavailable()

    # -- Target ---------------------------------------------------------------------------------------

    def create(self, launch: Launch) -> ReplicaRecord:
        self._ready_to_call()  # the reconciler tries again after its backoff
        rid = replica_id(launch)
        name = f"conveyor-{rid}"
        files, args = replica_arguments(launch, rid)
        timeout_s = self._settings.replica_start_timeout_s

        def make() -> tuple[Any, Any, Any]:
            # Off the loop: reading a large model and putting it in the object store take seconds (the
            # reconciler, probes and routing of every deployment would wait), and so may the first actor's
            # creation, which exports its class to the cluster.
            artifact = self._artifact(launch, timeout_s)
            handle: Any = self._remote.options(
                name=name,
                namespace=self._namespace,
                lifetime="detached",  # outlives this control plane, which adopts it again (by name)
                num_cpus=max(1, int(launch.options.get("intra_op_threads") or 0)),
                max_restarts=0,  # a replacement is the reconciler's to start (with its backoff and events)
                max_concurrency=MAX_CONCURRENCY,
                scheduling_strategy="SPREAD",
            ).remote(rid, self._settings.replica_orphan_timeout_s)
            started = handle.start.remote(artifact, files, args, dict(launch.env), timeout_s)
            log.info("replica %s: actor %s created on the Ray cluster", rid, name)
            return handle, started, handle.wait.remote()

        self._actors[rid] = _Actor(
            None,
            None,
            None,
            launch.sha256,
            making=in_thread(make, f"ray-create-{rid}"),
            deadline=time.monotonic() + timeout_s,
            late=f"error: model not in Ray's object store and actor not created within {timeout_s:g}s",
        )
        return new_record(launch, rid, target=RAY, details={"actor": name, "namespace": self._namespace})

    def endpoint(self, record: ReplicaRecord) -> str | None:
        actor = self._actors.get(record.id)
        if actor is None:
            return record.address or None
        if not self._made(record.id, actor):
            return actor.address
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
        if actor is None or actor.outcome is not None:
            return
        if not self._made(record.id, actor):  # not made yet: it never served, and never will
            self._abandon(actor)
            actor.outcome = {"code": 0 if drain else None, "log": ""}
            return
        if actor.outcome is not None or actor.handle is None:
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
        if not self._made(record.id, actor):
            return True
        if actor.outcome is not None:
            return False
        if self._ready(actor.done):
            return False
        if actor.end_at is not None and time.monotonic() > actor.end_at:
            self._kill(actor.handle)
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
        """True at once for a recorded actor: it is found again (by name) in a thread, which waits for the
        cluster's connection first; one not found is gone at the next ``alive``, as one that died is. The
        reconciler's probe of its address, meanwhile, says whether its replica serves."""
        name = record.details.get("actor")
        if not name:
            return False
        namespace = record.details.get("namespace", self._namespace)
        self._connect()  # a failed attempt is tried again

        def find() -> tuple[Any, Any, Any]:
            self._await_connection(ADOPT_CONNECT_S)
            handle = self._ray.get_actor(name, namespace=namespace)
            described = self._ray.get(handle.describe.remote(), timeout=ADOPT_TIMEOUT_S)
            if not described.get("running"):
                self._kill(handle)
                raise LookupError(f"actor {name} runs no replica")
            handle.touch.remote()
            return handle, None, handle.wait.remote()

        self._actors[record.id] = _Actor(
            None,
            None,
            None,
            address=record.address,
            making=in_thread(find, f"ray-adopt-{record.id}"),
            deadline=time.monotonic() + ADOPT_CONNECT_S + 2 * ADOPT_TIMEOUT_S,
            late=f"error: actor {name} not found again within {ADOPT_CONNECT_S + 2 * ADOPT_TIMEOUT_S:g}s",
        )
        return True

    def keepalive(self) -> None:
        now = time.monotonic()
        if now - self._last_keepalive < KEEPALIVE_S:
            return
        self._last_keepalive = now
        for actor in self._actors.values():
            if actor.outcome is None and actor.handle is not None:
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
        if actor.making is not None:
            self._abandon(actor)
        else:
            self._kill(actor.handle)  # its replica exited; the actor (detached) would otherwise stay
        if actor.sha256 and not any(a.sha256 == actor.sha256 for a in self._actors.values()):
            with self._artifacts_lock:  # no replica of that version left: free the object
                self._artifacts.pop(actor.sha256, None)

    async def stop_all(self, records: Sequence[ReplicaRecord], timeout_s: float) -> None:
        """Drain all, wait for every replica's exit together (``ray.wait`` in a thread), kill the actors;
        an actor still being made is killed once it is, within the same ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        actors = [a for r in records if (a := self._actors.get(r.id)) is not None]
        making = [a.making for a in actors if a.making is not None]
        for r in records:
            self.stop(r, drain=True)
        done = [a.done for a in actors if a.outcome is None and a.done is not None]
        if done:
            await asyncio.to_thread(self._ray.wait, done, num_returns=len(done), timeout=timeout_s)
        if making:
            left = max(0.0, deadline - time.monotonic())
            await asyncio.to_thread(wait_futures, making, timeout=left)
            for made in making:
                self._kill_made(made)  # again: wait_futures may return before the callback ran
        for r in records:
            self.forget(r)

    def release(self) -> None:
        with self._artifacts_lock:
            self._artifacts.clear()

    # -- inside ----------------------------------------------------------------------------------------

    def _made(self, rid: str, actor: _Actor) -> bool:
        """Whether the thread making ``actor`` is over (made, failed, or given up at its deadline): its
        handle, or the outcome of a replica that never ran, is then known. On the loop; never waits."""
        making = actor.making
        if making is None:
            return True
        if making.done():
            actor.making = None
            try:
                actor.handle, actor.started, actor.done = making.result()
            except Exception as exc:
                actor.outcome = _not_made(exc)
                log.warning("replica %s: %s", rid, actor.outcome["log"])
            return True
        if time.monotonic() > actor.deadline:
            self._abandon(actor)
            actor.outcome = {"code": None, "log": actor.late}
            log.warning("replica %s: %s", rid, actor.outcome["log"])
            return True
        return False

    def _abandon(self, actor: _Actor) -> None:
        """Nobody wants what ``actor.making`` makes: not made if it has not begun, else killed once made."""
        making, actor.making = actor.making, None
        if making is not None and not making.cancel():
            making.add_done_callback(self._kill_made)

    def _kill_made(self, making: Future[tuple[Any, Any, Any]]) -> None:
        if making.done() and not making.cancelled() and making.exception() is None:
            self._kill(making.result()[0])

    def _ready(self, ref: Any) -> bool:
        ready, _ = self._ray.wait([ref], timeout=0, fetch_local=False)
        return bool(ready)

    def _outcome(self, record: ReplicaRecord) -> dict[str, Any] | None:
        actor = self._actors.get(record.id)
        if actor is None:
            return self._gone.get(record.id)
        if not self._made(record.id, actor):
            return None
        if actor.outcome is None and self._ready(actor.done):
            try:
                actor.outcome = dict(self._ray.get(actor.done, timeout=1.0))
            except Exception:  # the actor died (ray.kill, its node lost): killed, as a SIGKILL is
                actor.outcome = {"code": None, "log": ""}
        return actor.outcome

    def _kill(self, handle: Any) -> None:
        if handle is None:
            return
        with contextlib.suppress(Exception):  # already dead
            self._ray.kill(handle, no_restart=True)

    def _artifact(self, launch: Launch, timeout_s: float) -> Any:
        """In a making thread: the version's bytes in the object store, read and verified against their
        digest by the first thread that needs them (the replica checks them again as it loads them)."""
        with self._artifacts_lock:
            put = self._artifacts.get(launch.sha256)
            mine = put is None
            if put is None:
                put = self._artifacts[launch.sha256] = Future()
        if mine:
            try:
                data = read_artifact(
                    f"{launch.model}:{launch.version}", launch.model_file, launch.sha256, self._cipher
                )
                put.set_result(self._ray.put(data))
            except BaseException as exc:
                with self._artifacts_lock:  # the next replica of the version tries again
                    if self._artifacts.get(launch.sha256) is put:
                        self._artifacts.pop(launch.sha256)
                put.set_exception(exc)
                raise
        try:  # bounded beyond the loop's deadline for the replica (it gives up first)
            return put.result(timeout=2 * timeout_s)
        except TimeoutError:
            raise errors.Unavailable(
                f"model {launch.model}:{launch.version}: not in Ray's object store within {2 * timeout_s:g}s"
            ) from None


def in_thread(work: Callable[[], T], name: str) -> Future[T]:
    """``work()`` in a daemon thread of its own, its result or error in the Future; cancelled before it
    begins, it never runs. Not a ThreadPoolExecutor: interpreter exit joins its threads, so one Ray call
    hung on a cluster gone away would hold the control plane's exit."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to whoever reads the Future, on the loop
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _not_made(exc: BaseException) -> dict[str, Any]:
    """The outcome of a replica whose actor was not made: the data-loss status when the model's bytes are
    not the version's (the reconciler's ArtifactCorrupt, as when a replica refuses them), 1 for another
    error of ours, killed for Ray's."""
    if isinstance(exc, errors.ConveyorError):
        code = EXIT_DATA_LOSS if isinstance(exc, errors.IntegrityError) else 1
        return {"code": code, "log": f"error: {exc.message}"}
    text = str(exc).strip()
    return {"code": None, "log": "error: " + (text.splitlines()[0] if text else type(exc).__name__)}


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
