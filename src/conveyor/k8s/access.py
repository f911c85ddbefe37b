"""What the control plane may do in its namespace: a ServiceAccount and a Role bound to it, so that a control
plane running in the cluster can apply ``target: kubernetes`` deployments (k8s/apply.py, with the pod's
service account) — the kinds those deployments are made of, nothing else."""

from __future__ import annotations

from typing import Any, Final

from conveyor.k8s.names import Options, labels, metadata

# (API group, resource) of every kind stack.deployment_objects renders.
APPLIED: Final = (
    ("apps", "deployments"),
    ("", "services"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"),
)
RBAC: Final = "rbac.authorization.k8s.io"
VERBS: Final = ["get", "list", "watch", "create", "patch"]
"""Server-side apply is a PATCH that creates what is missing; get/list/watch to read what runs."""


def service_account(options: Options) -> dict[str, Any]:
    # Mounted by the control plane's pod only (it asks for it); no other pod runs as this account.
    return _object("v1", "ServiceAccount", options, automountServiceAccountToken=False)


def role(options: Options) -> dict[str, Any]:
    groups = sorted({group for group, _ in APPLIED})
    rules = [
        {"apiGroups": [group], "resources": sorted(r for g, r in APPLIED if g == group), "verbs": VERBS}
        for group in groups
    ]
    return _object(f"{RBAC}/v1", "Role", options, rules=rules)


def role_binding(options: Options) -> dict[str, Any]:
    name = options.shared("control-plane")
    return _object(
        f"{RBAC}/v1",
        "RoleBinding",
        options,
        roleRef={"apiGroup": RBAC, "kind": "Role", "name": name},
        subjects=[{"kind": "ServiceAccount", "name": name, "namespace": options.namespace}],
    )


def _object(api_version: str, kind: str, options: Options, **body: Any) -> dict[str, Any]:
    """One of the control plane's access objects: they share its name and labels."""
    meta = metadata(options.shared("control-plane"), options, labels(options, "control-plane"))
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}
