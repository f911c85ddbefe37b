"""``conveyor build``: a registered model version as a container image — the build context (Dockerfile, the
artifact named by its digest, the running Conveyor's wheel, pinned dependencies) and its build through the
Docker Engine API when a daemon is reachable (docs/operations.md, "Containers")."""

from conveyor.container.context import BuildContext, build_context, runtime_constraints
from conveyor.container.dockerfile import ImageSpec, render_dockerfile
from conveyor.container.engine import DockerEngine, EngineUnreachable

__all__ = [
    "BuildContext",
    "DockerEngine",
    "EngineUnreachable",
    "ImageSpec",
    "build_context",
    "render_dockerfile",
    "runtime_constraints",
]
