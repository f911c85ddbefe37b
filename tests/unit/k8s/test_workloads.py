"""The replica, gateway and control-plane pods: what they run, their probes, security and resources."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.k8s import Options, stack_objects
from conveyor.k8s.workloads import (
    control_plane_deployment,
    gateway_deployment,
    home_claim,
    memory_for,
    replica_deployment,
    settings_secret,
)
from tests.unit.k8s.specs import S3, SHA, served, strict_k8s


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_replica_runs_the_replica_process_on_the_artifact_by_digest_from_the_home_volume() -> None:
    obj = replica_deployment(served(replicas=3), Options())
    strict_k8s(obj)
    assert obj["metadata"]["name"] == "iris-v3"
    assert obj["metadata"]["annotations"]["conveyor.dev/sha256"] == SHA
    assert obj["spec"]["replicas"] == 3
    c = _container(obj)
    assert c["command"] == ["python", "-m", "conveyor.server"]
    path = f"/var/lib/conveyor/artifacts/{SHA[:2]}/{SHA[2:]}"
    assert c["args"] == ["--host=0.0.0.0", "--port=8080", f"--model=iris:3={path}", f"--sha256=iris:3={SHA}"]
    assert {"name": "home", "mountPath": "/var/lib/conveyor", "readOnly": True} in c["volumeMounts"]
    claims = [v for v in obj["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "conveyor-home", "readOnly": True}}
    ]


def test_probes_are_on_the_v2_health_endpoints() -> None:
    for obj in (replica_deployment(served(), Options()), gateway_deployment(Options())):
        c = _container(obj)
        assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
        assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert _container(control_plane_deployment(Options()))["readinessProbe"]["httpGet"]["path"] == (
        "/api/v1/health"
    )


@pytest.mark.parametrize("which", ["replica", "gateway", "control-plane"])
def test_every_pod_runs_as_non_root_on_a_read_only_root_with_no_capabilities(which: str) -> None:
    obj = {
        "replica": replica_deployment(served(), Options(artifacts=S3)),
        "gateway": gateway_deployment(Options()),
        "control-plane": control_plane_deployment(Options()),
    }[which]
    pod = obj["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Only the control plane gets its service account's token: it applies target: kubernetes deployments.
    assert pod["automountServiceAccountToken"] is (which == "control-plane")
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # the only writable path but data
    conveyor = pod["containers"][0]
    assert _env(conveyor)["CONVEYOR_LOG_TO_FILE"] == "false"  # stderr only: no file under a read-only root
    assert _env(conveyor)["CONVEYOR_LOG_FORMAT"] == "json"


def test_threads_become_the_cpu_request_and_limit_and_the_model_size_the_memory() -> None:
    c = _container(replica_deployment(served(size=100 * 2**20, resources={"threads": 4}), Options()))
    assert c["resources"] == {
        "requests": {"cpu": "4", "memory": "576Mi"},
        "limits": {"cpu": "4", "memory": "1152Mi"},
    }
    assert _env(c)["CONVEYOR_INTRA_OP_THREADS"] == "4"
    unset = _container(replica_deployment(served(), Options()))
    assert unset["resources"]["requests"]["cpu"] == "1"
    assert "CONVEYOR_INTRA_OP_THREADS" not in _env(unset)
    assert memory_for(0) == ("256Mi", "512Mi")


def test_batching_and_the_cache_are_the_replicas_settings_and_what_the_spec_leaves_out_stays_out() -> None:
    spec: dict[str, Any] = {
        "batching": {"maxBatchSize": 64, "maxQueueDelayMicroseconds": 1000},
        "cache": {"maxEntries": 500, "ttl": "5m"},
    }
    env = _env(_container(replica_deployment(served(**spec), Options())))
    assert env["CONVEYOR_MAX_BATCH_SIZE"] == "64"
    assert env["CONVEYOR_MAX_QUEUE_DELAY_US"] == "1000"
    assert "CONVEYOR_MAX_QUEUE_SIZE" not in env
    assert env["CONVEYOR_CACHE_MAX_ENTRIES"] == "500"
    assert env["CONVEYOR_CACHE_TTL_S"] == "300.0"
    assert env["CONVEYOR_ARTIFACT_KEY"] == {
        "secretKeyRef": {"name": "conveyor-settings", "key": "artifact-key", "optional": True}
    }


def test_with_s3_an_init_container_copies_the_object_and_the_replica_reads_it_from_an_empty_dir() -> None:
    obj = replica_deployment(served(), Options(artifacts=S3))
    strict_k8s(obj)
    pod = obj["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][:3] == ["aws", "s3", "cp"]
    assert init["command"][-2:] == [f"s3://models/conveyor/{SHA[:2]}/{SHA[2:]}", f"/models/{SHA}"]
    env = _env(init)
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["key"] == "aws-secret-access-key"
    assert f"--model=iris:3=/models/{SHA}" in pod["containers"][0]["args"]
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert home_claim(Options(artifacts=S3))["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert home_claim(Options())["spec"]["accessModes"] == ["ReadWriteMany"]  # replicas share it
    cp_env = _env(_container(control_plane_deployment(Options(artifacts=S3))))
    assert cp_env["CONVEYOR_ARTIFACTS_URL"] == "s3://models/conveyor"


def test_the_control_plane_is_one_pod_replaced_not_surged_with_its_settings_from_the_secret() -> None:
    obj = control_plane_deployment(Options(secret_name="prod-conveyor"))
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["strategy"] == {"type": "Recreate"}  # one control plane per home: it takes a lock
    env = _env(_container(obj))
    assert env["CONVEYOR_HOME"] == "/var/lib/conveyor"
    assert env["CONVEYOR_DATABASE_URL"]["secretKeyRef"] == {
        "name": "prod-conveyor",
        "key": "database-url",
        "optional": True,
    }
    gateway = _container(gateway_deployment(Options()))
    assert "--control-plane=http://conveyor-control-plane:8000" in gateway["args"]
    assert _env(gateway)["CONVEYOR_TOKEN"]["secretKeyRef"]["key"] == "gateway-token"


def test_the_secret_holds_placeholders_only_and_an_existing_one_is_referenced_instead() -> None:
    secret = settings_secret(Options(artifacts=S3))
    assert set(secret["stringData"].values()) == {"CHANGE-ME"}
    assert set(secret["stringData"]) == {
        "database-url",
        "artifact-key",
        "gateway-token",
        "aws-access-key-id",
        "aws-secret-access-key",
    }
    kinds = [o["kind"] for o in stack_objects([served()], Options(secret_name="prod-conveyor"))]
    assert "Secret" not in kinds
    assert "Secret" in [o["kind"] for o in stack_objects([served()], Options())]


def test_labels_are_the_recommended_ones_and_selectors_leave_the_version_out() -> None:
    obj = replica_deployment(served(), Options(instance="ml"))
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "conveyor"
    assert labels["app.kubernetes.io/instance"] == "ml"
    assert labels["app.kubernetes.io/component"] == "replica"
    assert labels["app.kubernetes.io/managed-by"] == "conveyor"
    assert "app.kubernetes.io/version" in labels
    selector = obj["spec"]["selector"]["matchLabels"]
    assert "app.kubernetes.io/version" not in selector  # an upgrade of Conveyor keeps the selector
    assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
