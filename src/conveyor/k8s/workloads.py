"""The pods: a Deployment per model version for the replicas (``python -m conveyor.server`` on V2 REST), the
gateway's and the control plane's Deployments, the control plane's home volume and the settings Secret."""

from __future__ import annotations

import math
from typing import Any, Final

from conveyor.k8s.names import (
    API_PORT,
    HOME,
    HTTP_PORT,
    MODELS,
    Options,
    Served,
    labels,
    metadata,
    replica_labels,
    replica_name,
    selector,
)

RUN_AS: Final = 10001
"""The uid and gid every container runs as (any non-root id works: the image needs no file of its own)."""
PLACEHOLDER: Final = "CHANGE-ME"

# The Secret's keys and the variables they fill (docs/operations.md, Kubernetes). Every one is optional for a
# pod, so a cluster with other means (an IAM role for S3, SQLite on the volume) leaves them out.
SECRET_KEYS: Final = {
    "database-url": "CONVEYOR_DATABASE_URL",
    "artifact-key": "CONVEYOR_ARTIFACT_KEY",
    "gateway-token": "CONVEYOR_TOKEN",
    "aws-access-key-id": "AWS_ACCESS_KEY_ID",
    "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY",
}


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probes(live: str, ready: str) -> dict[str, Any]:
    """Startup (the model loads), liveness and readiness probes on the named port ``http``."""

    def get(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    return {
        "startupProbe": get(live, 2, 60),  # up to 2 minutes to load a model before liveness counts
        "livenessProbe": get(live, 10, 3),
        "readinessProbe": get(ready, 5, 2),
    }


LOG_ENV: Final = [
    {"name": "CONVEYOR_LOG_FORMAT", "value": "json"},
    # Logs go to stderr only, where the cluster collects them (kubectl logs): no file under a home that a
    # read-only root filesystem would refuse.
    {"name": "CONVEYOR_LOG_TO_FILE", "value": "false"},
]


def secret_env(options: Options, *keys: str) -> list[dict[str, Any]]:
    return [
        {
            "name": SECRET_KEYS[key],
            "valueFrom": {"secretKeyRef": {"name": options.secret, "key": key, "optional": True}},
        }
        for key in keys
    ]


def _pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 30,
        **more,
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }


def _deployment(
    name: str,
    options: Options,
    component: str,
    pod: dict[str, Any],
    *,
    replicas: int | None,
    extra: dict[str, str] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    extra = extra or {}
    spec: dict[str, Any] = {
        **({} if replicas is None else {"replicas": replicas}),
        "selector": {"matchLabels": selector(options, component, **extra)},
        "template": {"metadata": {"labels": labels(options, component, **extra)}, "spec": pod},
    }
    if strategy is not None:
        spec["strategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, options, labels(options, component, **extra)),
        "spec": spec,
    }


def cpu_for(threads: int | None) -> str:
    """CPU request and limit of a replica: its intra-op threads (1 for 0 or unset: ONNX Runtime chooses)."""
    return str(max(threads or 1, 1))


def memory_for(size_bytes: int) -> tuple[str, str]:
    """Request and limit: 256 MiB for the process plus 3x the model (the bytes read, the session's copy,
    its arenas), rounded up to 64 MiB; the limit is twice the request."""
    request = 256 + math.ceil(3 * size_bytes / 2**20 / 64) * 64
    return f"{request}Mi", f"{2 * request}Mi"


def replica_env(served: Served) -> list[dict[str, Any]]:
    """Logging (LOG_ENV), then the spec's batching, threads and cache as the replica's settings; a field the
    spec leaves out is left out here too, so it takes the image's default as under `conveyor up`."""
    spec = served.deployment.spec
    values: dict[str, object | None] = {
        "CONVEYOR_MAX_BATCH_SIZE": spec.batching.max_batch_size,
        "CONVEYOR_MAX_QUEUE_DELAY_US": spec.batching.max_queue_delay_microseconds,
        "CONVEYOR_MAX_QUEUE_SIZE": spec.batching.max_queue_size,
        "CONVEYOR_REQUEST_TIMEOUT_MS": spec.batching.request_timeout_milliseconds,
        "CONVEYOR_INTRA_OP_THREADS": spec.resources.threads,
    }
    if spec.cache is not None and spec.cache.enabled:
        values |= {
            "CONVEYOR_CACHE_MAX_ENTRIES": spec.cache.max_entries,
            "CONVEYOR_CACHE_MAX_BYTES": spec.cache.max_bytes,
            "CONVEYOR_CACHE_TTL_S": spec.cache.ttl_seconds,
        }
    return [*LOG_ENV, *({"name": k, "value": str(v)} for k, v in values.items() if v is not None)]


def replica_deployment(served: Served, options: Options) -> dict[str, Any]:
    """The replicas of one model version: the replica process on V2 REST, reading the artifact by digest
    (it hashes the bytes and refuses others, exit 5) from the shared home volume or, with S3, from the
    emptyDir an init container copied the object into."""
    model = served.model
    volumes: list[dict[str, Any]]
    init: list[dict[str, Any]] = []
    if (uri := options.artifacts.object_uri(model.sha256)) is None:
        path = f"{HOME}/artifacts/{model.sha256[:2]}/{model.sha256[2:]}"
        mounts = [{"name": "home", "mountPath": HOME, "readOnly": True}]
        volumes = [
            {"name": "home", "persistentVolumeClaim": {"claimName": options.shared("home"), "readOnly": True}}
        ]
    else:
        path = f"{MODELS}/{model.sha256}"
        mounts = [{"name": "models", "mountPath": MODELS, "readOnly": True}]
        volumes = [{"name": "models", "emptyDir": {}}]
        init = [fetch_container(uri, path, options)]
    cpu = cpu_for(served.deployment.spec.resources.threads)
    memory, memory_limit = memory_for(model.size_bytes)
    container = {
        "name": "replica",
        "image": options.image,
        "command": ["python", "-m", "conveyor.server"],
        "args": [
            "--host=0.0.0.0",
            f"--port={HTTP_PORT}",
            f"--model={model.ref}={path}",
            f"--sha256={model.ref}={model.sha256}",
        ],
        "env": [*replica_env(served), *secret_env(options, "artifact-key")],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        **http_probes("/v2/health/live", "/v2/health/ready"),
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory_limit},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }
    pod = _pod([container], volumes, **({"initContainers": init} if init else {}))
    spec = served.deployment.spec
    # Autoscaled: no count here, the HPA owns it (an apply that set one would reset the HPA's choice).
    replicas = (spec.replicas or 0) if spec.autoscaling is None else None
    out = _deployment(
        replica_name(served),
        options,
        "replica",
        pod,
        replicas=replicas,
        extra=replica_labels(served),
        # A new pod is ready before an old one stops: no capacity lost during a rollout.
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    )
    out["metadata"]["annotations"] = {
        "conveyor.dev/model": model.ref,
        "conveyor.dev/sha256": model.sha256,
        "conveyor.dev/spec-fingerprint": served.deployment.fingerprint(),
    }
    return out


def fetch_container(uri: str, path: str, options: Options) -> dict[str, Any]:
    """``aws s3 cp`` of the version's object; the replica verifies the bytes, so this copy needs no check."""
    env = [{"name": "HOME", "value": "/tmp"}]
    if options.artifacts.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": options.artifacts.endpoint_url})
    if options.artifacts.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": options.artifacts.region})
    return {
        "name": "fetch-artifact",
        "image": options.fetch_image,
        "command": ["aws", "s3", "cp", "--only-show-errors", uri, path],
        "env": [*env, *secret_env(options, "aws-access-key-id", "aws-secret-access-key")],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": MODELS}],
    }


def gateway_deployment(options: Options, replicas: int = 2) -> dict[str, Any]:
    """The gateway: follows the control plane's routing table with a gateway-role token from the Secret."""
    container = {
        "name": "gateway",
        "image": options.image,
        "command": ["conveyor", "gateway"],
        "args": [
            "--host=0.0.0.0",
            f"--port={HTTP_PORT}",
            f"--control-plane=http://{options.shared('control-plane')}:{API_PORT}",
        ],
        "env": [*LOG_ENV, *secret_env(options, "gateway-token")],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        **http_probes("/v2/health/live", "/v2/health/ready"),
        "resources": {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return _deployment(
        options.shared("gateway"), options, "gateway", _pod([container], []), replicas=replicas
    )


def control_plane_deployment(options: Options) -> dict[str, Any]:
    """The control plane: one per home (it takes a lock there), so one replica, replaced not surged."""
    env = [
        {"name": "CONVEYOR_HOME", "value": HOME},
        *LOG_ENV,
        *secret_env(options, "database-url", "artifact-key"),
    ]
    if (source := options.artifacts).url is not None:
        env.append({"name": "CONVEYOR_ARTIFACTS_URL", "value": source.url})
        s3 = {"CONVEYOR_S3_ENDPOINT_URL": source.endpoint_url, "CONVEYOR_S3_REGION": source.region}
        env += [{"name": key, "value": value} for key, value in s3.items() if value]
        env += secret_env(options, "aws-access-key-id", "aws-secret-access-key")
    container = {
        "name": "control-plane",
        "image": options.image,
        "command": ["conveyor", "server"],
        "args": ["--host=0.0.0.0", f"--api-port={API_PORT}"],
        "env": env,
        "ports": [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}],
        **http_probes("/api/v1/health", "/api/v1/health"),
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": HOME}],
    }
    volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": options.shared("home")}}]
    name = options.shared("control-plane")
    # Its service account's token (k8s/access.py: apply rights in this namespace only) is what an in-cluster
    # control plane applies target: kubernetes deployments with.
    pod = _pod([container], volumes, serviceAccountName=name, automountServiceAccountToken=True)
    return _deployment(name, options, "control-plane", pod, replicas=1, strategy={"type": "Recreate"})


def home_claim(options: Options, size: str = "10Gi") -> dict[str, Any]:
    """The control plane's home: the SQLite registry (unless database-url is set) and, without S3, the
    artifacts every replica reads, hence ReadWriteMany then (NFS, CephFS, EFS, Filestore...)."""
    mode = "ReadWriteMany" if options.artifacts.url is None else "ReadWriteOnce"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(options.shared("home"), options, labels(options, "control-plane")),
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}},
    }


def settings_secret(options: Options) -> dict[str, Any]:
    """The settings Secret with placeholder values only: fill it in (or pass --secret-name) before use."""
    keys = ["database-url", "artifact-key", "gateway-token"]
    if options.artifacts.url is not None:
        keys += ["aws-access-key-id", "aws-secret-access-key"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(options.secret, options, labels(options, "control-plane")),
        "type": "Opaque",
        "stringData": dict.fromkeys(keys, PLACEHOLDER),
    }
