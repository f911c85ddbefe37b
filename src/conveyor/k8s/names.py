"""What every rendered object shares: the inputs (a deployment and its resolved model version, the options),
object names that Kubernetes accepts, and the recommended ``app.kubernetes.io/*`` labels."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Final

from conveyor import __version__
from conveyor.spec import Deployment

DEFAULT_IMAGE: Final = f"conveyor:{__version__}"
"""The image every Conveyor container runs unless ``--image`` says otherwise: the package at this version
(the name planned for `conveyor build`'s image; push one where the cluster pulls from, pass its full name)."""
DEFAULT_FETCH_IMAGE: Final = "amazon/aws-cli:2.17.0"
"""The init container that copies a version's artifact from S3 into the replica's pod (``aws s3 cp``)."""
DEFAULT_NAMESPACE: Final = "conveyor"
DEFAULT_INSTANCE: Final = "conveyor"

HTTP_PORT: Final = 8080
"""V2 REST of replicas and the gateway."""
API_PORT: Final = 8000
"""The control plane's management API."""
HOME: Final = "/var/lib/conveyor"
"""CONVEYOR_HOME in the control plane's pod (a PersistentVolumeClaim), read-only in replicas' pods."""
MODELS: Final = "/models"
"""Where the S3 init container leaves a replica's artifact (an emptyDir)."""
ADMIN_LABEL: Final = "conveyor.dev/admin"
"""Pods (any namespace) labelled ``conveyor.dev/admin: "true"`` may reach the management API."""

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ModelVersion:
    """The registry's answer for a deployment's ``spec.model``: which version, and its artifact."""

    name: str
    version: int
    sha256: str
    size_bytes: int

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Served:
    """A Deployment and the model version it serves."""

    deployment: Deployment
    model: ModelVersion

    @property
    def name(self) -> str:
        return self.deployment.metadata.name


@dataclass(frozen=True)
class ArtifactSource:
    """Where replicas find artifacts: ``url`` s3://BUCKET[/PREFIX] (CONVEYOR_ARTIFACTS_URL), else the control
    plane's home folder, shared with replicas as a ReadWriteMany volume."""

    url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None

    def object_uri(self, sha256: str) -> str | None:
        """``s3://bucket/prefix/ab/cdef...``: the object holding the blob (registry/s3store.py's key)."""
        if self.url is None:
            return None
        return f"{self.url.rstrip('/')}/{sha256[:2]}/{sha256[2:]}"


@dataclass(frozen=True)
class Options:
    """Choices of the person exporting; every default is documented in docs/operations.md."""

    namespace: str = DEFAULT_NAMESPACE
    instance: str = DEFAULT_INSTANCE
    """``app.kubernetes.io/instance`` and the prefix of the shared objects' names."""
    image: str = DEFAULT_IMAGE
    fetch_image: str = DEFAULT_FETCH_IMAGE
    secret_name: str | None = None
    """An existing Secret to read settings from; None: render ``INSTANCE-settings`` with placeholders."""
    artifacts: ArtifactSource = field(default_factory=ArtifactSource)

    @property
    def secret(self) -> str:
        return self.secret_name or f"{self.instance}-settings"

    def shared(self, what: str) -> str:
        """The name of a shared object: ``INSTANCE-WHAT``."""
        return dns_label(f"{self.instance}-{what}")


def dns_label(text: str) -> str:
    """``text`` as an RFC 1035 label (what a Service name must be): lowercase letters, digits and '-', a
    letter first, at most 63; a name cut short keeps a hash of the whole so two never collide."""
    name = _NOT_DNS.sub("-", text.lower()).strip("-") or "x"
    if not name[0].isalpha():
        name = f"c-{name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def replica_name(served: Served) -> str:
    """Name of a model version's replica Deployment, Service, HPA, PDB and NetworkPolicy."""
    return dns_label(f"{served.name}-v{served.model.version}")


def labels(options: Options, component: str, **extra: str) -> dict[str, str]:
    """The recommended labels (kubernetes.io/docs/concepts/overview/working-with-objects/common-labels)."""
    return {
        "app.kubernetes.io/name": "conveyor",
        "app.kubernetes.io/instance": options.instance,
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "conveyor",
        "app.kubernetes.io/managed-by": "conveyor",
        **extra,
    }


def selector(options: Options, component: str, **extra: str) -> dict[str, str]:
    """The labels that pick a component's pods: never the version, so an upgrade keeps its selector
    (a Deployment's selector cannot change)."""
    return {"app.kubernetes.io/instance": options.instance, "app.kubernetes.io/component": component, **extra}


def replica_labels(served: Served) -> dict[str, str]:
    """What tells one deployment's model version apart, besides the component."""
    return {"conveyor.dev/deployment": served.name, "conveyor.dev/model-version": str(served.model.version)}


def metadata(name: str, options: Options, labels_: dict[str, str], **more: Any) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": labels_, **more}
