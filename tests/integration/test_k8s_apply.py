"""``target: kubernetes`` with a kubeconfig whose API server does not answer: one line, quickly (no cluster
runs here; the objects themselves are checked in tests/unit/k8s and tests/e2e/test_export_k8s_cli.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from conveyor import errors
from conveyor.k8s.apply import connect
from tests.fixtures.processes import free_port


def test_an_api_server_that_does_not_answer_is_one_line_naming_the_context_and_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import kube_config

    server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "dev", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kind-dev", "context": {"cluster": "dev", "user": "dev", "namespace": "ml"}}],
        "current-context": "kind-dev",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    started = time.monotonic()
    with pytest.raises(errors.Unavailable) as caught:
        connect()
    assert time.monotonic() - started < 10
    message = caught.value.message
    assert message.startswith(f"kubernetes: cannot reach the cluster of context kind-dev at {server}: ")
    assert "\n" not in message
