"""The objects together: those of one deployment's model version (what ``target: kubernetes`` applies) and
the whole stack (those plus the control plane, the gateway, their Services, policies, home and Secret)."""

from __future__ import annotations

from typing import Any

from conveyor.k8s import access, network, scaling, workloads
from conveyor.k8s.names import Options, Served

GATEWAY_REPLICAS = 2


def deployment_objects(served: Served, options: Options) -> list[dict[str, Any]]:
    """A model version's replica Deployment, Service, HPA (when autoscaled), PDB and NetworkPolicy."""
    hpa = scaling.autoscaler(served, options)
    return [
        workloads.replica_deployment(served, options),
        network.replica_service(served, options),
        *([hpa] if hpa is not None else []),
        scaling.disruption_budget(served, options),
        network.replica_policy(served, options),
    ]


def stack_objects(deployments: list[Served], options: Options) -> list[dict[str, Any]]:
    """Everything a cluster needs to run ``deployments``: the shared objects, then each deployment's. The
    Secret is left out when ``options.secret_name`` names an existing one."""
    shared = [
        *([] if options.secret_name else [workloads.settings_secret(options)]),
        workloads.home_claim(options),
        access.service_account(options),
        access.role(options),
        access.role_binding(options),
        workloads.control_plane_deployment(options),
        network.control_plane_service(options),
        network.control_plane_policy(options),
        workloads.gateway_deployment(options, GATEWAY_REPLICAS),
        network.gateway_service(options),
        scaling.budget(options.shared("gateway"), options, "gateway", GATEWAY_REPLICAS),
        network.gateway_policy(options),
    ]
    return shared + [obj for served in deployments for obj in deployment_objects(served, options)]
