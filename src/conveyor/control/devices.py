"""What a deployment's ``resources.gpu`` asks of this machine (docs/gpu.md).

Decided by runtime/providers.py from the machine's capabilities, which a short-lived probe process reports
once (the control plane loads no ONNX Runtime): a GPU that is missing refuses the apply, or with
``fallback: cpu`` runs the deployment on the CPU and says so. Deployments of other targets are left to
their target's machines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from conveyor.runtime.providers import Choice, choose, parse_device, probe_capabilities
from conveyor.spec import Deployment
from conveyor.spec.resources import DeploymentSpec

log = logging.getLogger("conveyor.control")


def device_choice(name: str, spec: DeploymentSpec) -> Choice | None:
    """The device of the deployment's replicas; None for one that asks for no GPU (the CPU, as before the
    field existed). InvalidInput naming what is missing when the GPU is, unless ``fallback: cpu``."""
    resources = spec.resources
    if not resources.gpu or spec.target != "local":
        return None
    return choose(
        parse_device(resources.device),
        probe_capabilities(),
        fallback_cpu=resources.fallback == "cpu",
        what=f"deployment {name!r} asks for resources.gpu: {resources.gpu}"
        + ("" if resources.accelerator is None else f" with accelerator: {resources.accelerator}"),
    )


def check_devices(resources: Sequence[Deployment]) -> dict[str, str]:
    """At apply: InvalidInput for the first deployment whose GPU this machine lacks (and that has no
    fallback); the warning of each that falls back to the CPU, by name (also logged)."""
    warnings: dict[str, str] = {}
    for r in resources:
        choice = device_choice(r.metadata.name, r.spec)
        if choice is not None and choice.warning is not None:
            log.warning("%s", choice.warning)
            warnings[r.metadata.name] = choice.warning
    return warnings
