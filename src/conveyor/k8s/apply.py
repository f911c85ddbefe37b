"""Server-side apply of rendered objects with the kubernetes client (the ``kubernetes`` extra, imported here
only) and the current kubeconfig context, else the pod's service account when run inside a cluster.

``apply_objects`` takes any object with the ``DynamicClient`` calls it makes, so its call sequence is unit
tested against a fake; ``connect`` is the one place that talks to a real cluster.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from conveyor import errors

FIELD_MANAGER: Final = "conveyor"
EXTRA_HINT: Final = "target kubernetes needs the kubernetes extra: pip install 'conveyor[kubernetes]'"


class Dynamic(Protocol):
    """The part of ``kubernetes.dynamic.DynamicClient`` used here."""

    @property
    def resources(self) -> Any: ...

    def server_side_apply(self, resource: Any, body: Any = None, **kwargs: Any) -> Any: ...


class Cluster:
    """A connected dynamic client and the namespace of the kubeconfig's current context."""

    def __init__(self, client: Dynamic, namespace: str, where: str) -> None:
        self.client = client
        self.namespace = namespace
        self.where = where
        """The context or server, for messages."""


def connect(context: str | None = None) -> Cluster:
    """A client of the current kubeconfig context (or ``context``), else of the cluster this process runs
    in. Unavailable, one line, when there is no configuration or the API server does not answer."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.dynamic import DynamicClient
    except ImportError:
        raise errors.InvalidInput(EXTRA_HINT) from None
    namespace = "default"
    try:
        contexts, current = config.list_kube_config_contexts()
        chosen = next((c for c in contexts if c["name"] == context), None) if context else current
        if context and chosen is None:
            raise errors.InvalidInput(f"kubernetes: no context {context!r} in the kubeconfig")
        namespace = (chosen or {}).get("context", {}).get("namespace", namespace)
        api = config.new_client_from_config(context=context)
        where = f"context {(chosen or {}).get('name', '?')}"
    except (ConfigException, OSError) as exc:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise errors.Unavailable(
                f"kubernetes: no cluster configured: no usable kubeconfig ({_first_line(exc)}) and not "
                "running in a cluster"
            ) from None
        api = client.ApiClient()
        where = "the in-cluster service account"
        namespace = _incluster_namespace()
    api.configuration.retries = 1  # one quick try: the user is waiting for apply's answer
    try:
        dynamic = DynamicClient(api)
    except Exception as exc:  # urllib3's MaxRetryError, an ApiException: what the discovery call raised
        raise errors.Unavailable(
            f"kubernetes: cannot reach the cluster of {where} at {api.configuration.host}: {_first_line(exc)}"
        ) from None
    return Cluster(dynamic, namespace, where)


def apply_objects(cluster: Cluster, objects: list[dict[str, Any]]) -> list[str]:
    """Server-side apply each object, in order, into its namespace (the cluster's when it names none), as
    field manager ``conveyor`` taking over conflicting fields; returns ``kind/name`` of each applied."""
    done: list[str] = []
    for obj in objects:
        meta = obj["metadata"]
        body = {**obj, "metadata": {**meta, "namespace": meta.get("namespace") or cluster.namespace}}
        what = f"{obj['kind'].lower()}/{meta['name']}"
        try:
            resource = cluster.client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            cluster.client.server_side_apply(
                resource,
                body=body,
                name=meta["name"],
                namespace=body["metadata"]["namespace"],
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except Exception as exc:  # the client's ApiException, ResourceNotFoundError, urllib3 errors
            applied = f" (applied before it: {', '.join(done)})" if done else ""
            raise errors.Unavailable(
                f"kubernetes: applying {what} in {cluster.where} failed: {_first_line(exc)}{applied}"
            ) from None
        done.append(what)
    return done


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"
