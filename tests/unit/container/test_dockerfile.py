"""The Dockerfile of a model's image: pinned slim base, non-root user, the health check on the V2 ready path,
the artifact under its digest (checked at build), labels, and how it serves (tokens or --public)."""

from __future__ import annotations

import dataclasses
import json
import re

from conveyor.container import ImageSpec, render_dockerfile
from conveyor.container.dockerfile import base_image

DIGEST = "ab" * 32
SPEC = ImageSpec(
    model="iris",
    version=3,
    sha256=DIGEST,
    wheel="conveyor-0.1.0-py3-none-any.whl",
    conveyor_version="0.1.0",
    base="python:3.11-slim",
)


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def _one(text: str, keyword: str) -> str:
    found = [line for line in _instructions(text) if line.startswith(keyword + " ")]
    assert len(found) == 1, found
    return found[0][len(keyword) + 1 :]


def test_the_base_is_the_running_pythons_slim_image_pinned_by_tag() -> None:
    assert base_image((3, 12)) == "python:3.12-slim"
    text = render_dockerfile(SPEC)
    assert _one(text, "FROM") == "python:3.11-slim"


def test_it_runs_as_a_non_root_user_created_with_that_uid() -> None:
    text = render_dockerfile(SPEC)
    assert _one(text, "USER") == "10001:10001"
    assert "useradd --uid 10001" in text
    # USER comes after every RUN: installs run as root, the server never does
    lines = _instructions(text)
    user = next(i for i, line in enumerate(lines) if line.startswith("USER "))
    assert all(not line.startswith("RUN ") for line in lines[user:])


def test_the_healthcheck_asks_the_v2_ready_endpoint_with_python_not_curl() -> None:
    healthcheck = _one(render_dockerfile(SPEC), "HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready'" in command[2]
    assert _one(render_dockerfile(SPEC), "EXPOSE") == "8080"


def test_the_artifact_is_named_by_its_digest_and_checked_at_build() -> None:
    text = render_dockerfile(SPEC)
    assert f'echo "{DIGEST}  /models/{DIGEST}.onnx" | sha256sum --check --strict -' in text
    assert f"ln -s {DIGEST}.onnx /models/iris.onnx" in text  # served under the model's name


def test_pip_installs_the_wheel_under_the_constraints_without_a_cache() -> None:
    run = [line for line in _instructions(render_dockerfile(SPEC)) if "pip install" in line]
    assert run == [
        "RUN pip install --no-cache-dir --constraint /tmp/conveyor/constraints.txt "
        "/tmp/conveyor/conveyor-0.1.0-py3-none-any.whl && rm -rf /tmp/conveyor"
    ]


def test_labels_name_the_model_its_digest_and_the_conveyor_version() -> None:
    label = _one(render_dockerfile(SPEC), "LABEL")
    pairs = dict(re.findall(r'([\w.]+)=("[^"]*")', label))
    labels = {k: json.loads(v) for k, v in pairs.items()}
    assert labels["dev.conveyor.model"] == "iris:3"
    assert labels["dev.conveyor.model.sha256"] == DIGEST
    assert labels["dev.conveyor.version"] == "0.1.0"
    assert labels["org.opencontainers.image.title"] == "conveyor-iris"
    assert labels["org.opencontainers.image.base.name"] == "python:3.11-slim"


def test_without_a_token_file_it_serves_public_and_says_why() -> None:
    text = render_dockerfile(SPEC)
    entry = json.loads(_one(text, "ENTRYPOINT"))
    assert entry == [
        "conveyor", "serve", "/models/iris.onnx", "--host", "0.0.0.0", "--port", "8080", "--public"
    ]  # fmt: skip
    assert "# --public: the container listens on 0.0.0.0" in text


def test_with_a_token_file_it_serves_with_the_mounted_file_and_holds_no_token() -> None:
    spec = dataclasses.replace(SPEC, token_file="/run/secrets/conveyor-tokens")
    text = render_dockerfile(spec)
    entry = json.loads(_one(text, "ENTRYPOINT"))
    assert entry[-2:] == ["--token-file", "/run/secrets/conveyor-tokens"]
    assert "--public" not in entry
    assert 'docker run -v "$PWD/tokens:/run/secrets/conveyor-tokens:ro"' in text
