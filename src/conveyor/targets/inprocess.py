"""A replica a gateway loads into its own process (placement inprocess, docs/serving.md): the routing table's
load description becomes a DataPlane behind the gateway's Upstream interface.

The load runs in a thread (reading, hashing and parsing a model must not stall requests to other models);
the probe passes only once it is done, so the gateway admits the replica then. A load that fails (a corrupt
artifact, a file gone) is logged and kept as ``problem``: the replica is never admitted.
The server package is imported inside the load only, so a gateway of replica processes never loads ONNX
Runtime (tests/unit/test_architecture.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from conveyor.errors import ConveyorError, Unavailable
from conveyor.protocol.service import EncodedRequest, EncodedResponse, InferenceService
from conveyor.protocol.table import InProcessLoad, ReplicaSpec
from conveyor.settings import Settings

log = logging.getLogger("conveyor.gateway")


class Plane(InferenceService, Protocol):
    """The server's DataPlane as used here (typed structurally: not even a type import of server at load)."""

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class LoadedUpstream:
    """An in-process replica that loads itself; its hot path, once loaded, is the DataPlane's own methods."""

    local = True

    def __init__(self, spec: ReplicaSpec, on_loaded: Callable[[], None], *, settings: Settings) -> None:
        """``on_loaded`` is called (on the event loop) when the model is ready to serve."""
        if spec.inprocess is None:
            raise ValueError(f"replica {spec.id} has no in-process load description")
        self.address = spec.address
        self.name = spec.id
        self.problem: str | None = None
        """Why the load failed; None while loading or once loaded."""
        self._load = spec.inprocess
        self._settings = settings
        self._plane: Plane | None = None
        self._task = asyncio.get_running_loop().create_task(self._load_plane(on_loaded))

    async def _load_plane(self, on_loaded: Callable[[], None]) -> None:
        try:
            plane = await asyncio.to_thread(_build, self._load, self._settings)
        except ConveyorError as exc:
            self.problem = exc.message
        except Exception as exc:  # ONNX Runtime's own errors: the replica is refused, the gateway serves on
            self.problem = f"{type(exc).__name__}: {exc}"
        else:
            self._plane = plane
            # Bound once, as InProcessUpstream does: from now on requests call the plane directly.
            self.admit = plane.admit  # type: ignore[method-assign]
            self.infer = plane.infer  # type: ignore[method-assign]
            self.model_metadata = plane.model_metadata  # type: ignore[method-assign]
            self.model_ready = plane.model_ready  # type: ignore[method-assign]
            log.info("in-process replica %s loaded %s", self.name, self._load.model_file)
            on_loaded()
            return
        log.error("in-process replica %s not loaded: %s", self.name, self.problem)

    def _not_loaded(self) -> Unavailable:
        why = f"its load failed: {self.problem}" if self.problem else "it is loading"
        return Unavailable(f"in-process replica {self.name} cannot serve: {why}")

    def admit(self, name: str, version: str | None) -> None:
        """Loading: infer answers why."""

    async def infer(self, request: EncodedRequest) -> EncodedResponse:
        raise self._not_loaded()

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        raise self._not_loaded()

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        raise self._not_loaded()

    async def probe(self) -> bool:
        return self._plane is not None and self._plane.ready()

    async def close(self) -> None:
        """Called once nothing is in flight (the gateway retires it so): wait for a load under way, then
        stop the batchers and their threads."""
        await asyncio.shield(self._task)
        plane, self._plane = self._plane, None
        if plane is not None:
            await plane.drain()
            await asyncio.to_thread(plane.close)  # joins the batcher threads: not on the event loop


def _build(load: InProcessLoad, settings: Settings) -> Plane:
    from conveyor.digests import read_artifact
    from conveyor.runtime import OnnxModel
    from conveyor.security.encryption import cipher_from
    from conveyor.server.dataplane import DataPlane

    cipher = cipher_from(settings.artifact_key, settings.artifact_key_file)
    data = read_artifact(f"{load.model}:{load.version}", load.model_file, load.sha256, cipher)
    model = OnnxModel(data, name=load.model, version=load.version, intra_op_threads=load.intra_op_threads)
    replica_settings = settings.model_copy(
        update={
            "max_batch_size": load.max_batch_size,
            "max_queue_delay_us": load.max_queue_delay_us,
            "max_queue_size": load.max_queue_size,
            "request_timeout_ms": load.request_timeout_ms,
            "intra_op_threads": load.intra_op_threads,
            "max_elements": load.max_elements,
        }
    )
    return DataPlane.from_settings([model], replica_settings)
