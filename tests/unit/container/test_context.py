"""The build context: the constraints pin what is installed here (runtime dependencies only), the artifact is
written under its digest and checked, the wheel must be the running Conveyor's, folders are not clobbered."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import conveyor
from conveyor import errors
from conveyor.container import build_context, runtime_constraints
from conveyor.registry.records import VersionInfo

DATA = b"not really onnx, but bytes with a digest"
WHEEL = f"conveyor-{conveyor.__version__}-py3-none-any.whl"


def _version(data: bytes = DATA) -> VersionInfo:
    return VersionInfo(
        name="iris",
        version=2,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        framework="onnx",
        signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []},
        description=None,
        tags={},
        aliases=["production"],
        parent_version=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        created_by="test",
    )


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "dist" / WHEEL
    path.parent.mkdir()
    path.write_bytes(b"PK a wheel stand-in")
    return path


def test_the_constraints_pin_the_installed_versions_of_the_runtime_dependencies_only() -> None:
    pins = dict(line.split("==") for line in runtime_constraints())
    for name in ("numpy", "onnxruntime", "httpx", "psycopg", "psycopg-binary", "anyio", "uvicorn"):
        assert pins[name] == importlib.metadata.version(name), name  # direct, extra-of-dep and transitive
    assert all(pins[name] == importlib.metadata.version(name) for name in pins)
    for dev in ("pytest", "mypy", "ruff", "hypothesis", "torch", "boto3", "kubernetes"):
        assert dev not in pins  # the dev extra and optional extras stay out
    assert list(pins) == sorted(pins)


def test_the_context_holds_the_artifact_under_its_digest_and_everything_the_dockerfile_copies(
    tmp_path: Path, wheel: Path
) -> None:
    version = _version()
    context = build_context(version, DATA, tmp_path / "ctx", wheel=wheel)
    out = tmp_path / "ctx"
    artifact = out / "models" / f"{version.sha256}.onnx"
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == version.sha256
    doc = json.loads((out / "models" / f"{version.sha256}.json").read_text())
    assert doc["signature"] == version.signature and doc["version"] == 2
    assert (out / WHEEL).read_bytes() == wheel.read_bytes()
    assert context.tag == "conveyor-iris:2"
    assert context.manifest["files"] == sorted(
        [".dockerignore", "Dockerfile", "constraints.txt", WHEEL, f"models/{version.sha256}.json",
         f"models/{version.sha256}.onnx"]
    )  # fmt: skip
    constraints = (out / "constraints.txt").read_text().splitlines()
    assert constraints[1:] == runtime_constraints()
    assert f"COPY constraints.txt {WHEEL} /tmp/conveyor/" in (out / "Dockerfile").read_text()


def test_bytes_that_are_not_the_versions_are_refused_and_leave_no_context(
    tmp_path: Path, wheel: Path
) -> None:
    with pytest.raises(errors.IntegrityError, match="iris:2"):
        build_context(_version(), b"other bytes", tmp_path / "ctx", wheel=wheel)
    assert not (tmp_path / "ctx").exists()


def test_a_wheel_of_another_package_or_version_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "conveyor-0.0.1-py3-none-any.whl"
    other.write_bytes(b"PK")
    with pytest.raises(errors.InvalidInput, match="not a wheel of the running conveyor"):
        build_context(_version(), DATA, tmp_path / "ctx", wheel=other)


def test_the_token_file_is_a_path_in_the_container(tmp_path: Path, wheel: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="absolute path"):
        build_context(_version(), DATA, tmp_path / "ctx", wheel=wheel, token_file="tokens.txt")


def test_a_folder_of_other_files_is_refused_and_an_earlier_context_needs_force(
    tmp_path: Path, wheel: Path
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(errors.Conflict, match="not a build context"):
        build_context(_version(), DATA, tmp_path / "busy", wheel=wheel, force=True)
    assert (tmp_path / "busy" / "notes.txt").exists()
    build_context(_version(), DATA, tmp_path / "ctx", wheel=wheel)
    with pytest.raises(errors.Conflict, match="--force"):
        build_context(_version(), DATA, tmp_path / "ctx", wheel=wheel)
    build_context(_version(), DATA, tmp_path / "ctx", wheel=wheel, force=True)
    (tmp_path / "ctx" / "secrets.env").write_text("mine too")
    with pytest.raises(errors.Conflict, match=r"also secrets\.env: --force replaces only a context.s own"):
        build_context(_version(), DATA, tmp_path / "ctx", wheel=wheel, force=True)
