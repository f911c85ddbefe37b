"""The targets of one control plane by kind (the spec's ``target``), each made when first asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from conveyor import errors
from conveyor.settings import Settings
from conveyor.targets.base import Target
from conveyor.targets.ray import ray_problem, ray_target


class Targets:
    """``made``: targets ready now (the local one); ``factories``: kind → a function making that target at
    first use (a Ray connection is opened only when a deployment or a recorded replica asks for it)."""

    def __init__(
        self, made: Iterable[Target] = (), factories: Mapping[str, Callable[[], Target]] | None = None
    ) -> None:
        self._made = {t.kind: t for t in made}
        self._factories = dict(factories or {})

    def get(self, kind: str) -> Target:
        """The target of ``kind``, made now if it was not; InvalidInput naming the kinds if none serves it."""
        target = self._made.get(kind)
        if target is None:
            factory = self._factories.get(kind)
            if factory is None:
                kinds = ", ".join(sorted({*self._made, *self._factories}))
                raise errors.InvalidInput(f"target {kind!r} is not available here (available: {kinds})")
            target = self._made[kind] = factory()
        return target

    def made(self) -> list[Target]:
        """The targets made so far: those whose replicas may run and need keeping alive and stopping."""
        return list(self._made.values())


def control_plane_targets(settings: Settings) -> Targets:
    """The targets of ``conveyor server``: its replica processes on this machine, made now (their lease
    must be kept from the first step); other kinds join ``factories`` here, made at first use."""
    from conveyor.targets.processes import LocalProcesses, socket_dir

    run_dir = settings.home / "run"
    local = LocalProcesses(
        run_dir,
        socket_dir(settings.home),
        lease=run_dir / "controlplane.lease",
        orphan_after_s=settings.replica_orphan_timeout_s,
    )
    factories: dict[str, Callable[[], Target]] = {"kubernetes": _kubernetes, "ray": lambda: _ray(settings)}
    made: list[Target] = [local]
    if settings.ray_address and ray_problem(settings) is None:
        made.append(_ray(settings))  # connecting now (seconds, in a thread): ready by the first deployment
    return Targets(made, factories)


def _kubernetes() -> Target:
    # Deployments of target kubernetes are applied to the cluster at apply (targets/kubernetes.py); this
    # serves a replica record of that kind, should one be recorded.
    from conveyor.targets.kubernetes import KubernetesTarget

    return KubernetesTarget.connect()


def _ray(settings: Settings) -> Target:
    # At the control plane's start when CONVEYOR_RAY_ADDRESS is set, else at the first target: ray
    # deployment (refused with what is missing); it imports Ray and connects in a thread (targets/ray.py).
    return ray_target(settings)
