"""`conveyor models ...`: what a user sees registering, listing, aliasing and deleting versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.homes import copy_home, register


@pytest.fixture(scope="module")
def one_version(tmp_path_factory: pytest.TempPathFactory, iris_files: dict[str, Path]) -> Path:
    """A home with iris:1 (the skops pipeline), alias production; registered in-process (setup)."""
    home = tmp_path_factory.mktemp("models") / "home"
    register(home, "iris", iris_files["skops"], aliases=["production"])
    return home


@pytest.fixture(scope="module")
def two_versions(
    tmp_path_factory: pytest.TempPathFactory, one_version: Path, iris_files: dict[str, Path]
) -> Path:
    """``one_version`` and iris:2 (the same file), no alias."""
    home = tmp_path_factory.mktemp("models") / "home"
    shutil.copytree(one_version, home)
    register(home, "iris", iris_files["skops"])
    return home


def test_register_with_sample_records_signature_and_parity(
    cli: CliRunner, iris_files: dict[str, Path]
) -> None:
    out = cli(
        "models",
        "register",
        "iris",
        str(iris_files["skops"]),
        "--sample",
        str(iris_files["sample"]),
        "--alias",
        "production",
        "--tag",
        "team=ml",
        "--json",
    )
    v = json.loads(out.stdout)
    for key in ("name", "version", "parent_version", "sha256", "size_bytes", "signature", "aliases"):
        assert key in v, key
    assert v["name"] == "iris" and v["version"] == 1 and v["aliases"] == ["production"]
    assert v["tags"] == {"team": "ml"}
    assert len(v["sha256"]) == 64 and v["size_bytes"] > 0
    assert v["signature"]["inputs"][0]["shape"] == [-1, 4]
    assert v["metadata"]["parity"]["max_abs_diff"] <= 1e-4


def test_versions_increment_and_lineage_is_kept(
    cli: CliRunner, cli_env: dict[str, str], one_version: Path, iris_files: dict[str, Path]
) -> None:
    copy_home(one_version, cli_env)
    out = cli("models", "register", "iris", str(iris_files["skops"]), "--parent-version", "1", "--json")
    assert json.loads(out.stdout)["version"] == 2
    assert json.loads(out.stdout)["parent_version"] == 1
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["latest_version"]) for m in listed] == [("iris", 2)]
    shown = json.loads(cli("models", "show", "iris", "--json").stdout)
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    human = cli("models", "list").stdout
    assert "iris" in human


def test_alias_moves_and_resolves(cli: CliRunner, cli_env: dict[str, str], two_versions: Path) -> None:
    copy_home(two_versions, cli_env)
    cli("models", "alias", "iris", "2", "production")
    shown = json.loads(cli("models", "show", "iris@production", "--json").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["production"]
    v1 = json.loads(cli("models", "show", "iris:1", "--json").stdout)
    assert v1["aliases"] == []


def test_delete_is_refused_while_aliased(cli: CliRunner, cli_env: dict[str, str], two_versions: Path) -> None:
    copy_home(two_versions, cli_env)
    refused = cli("models", "delete", "iris:1", check=False)
    assert refused.returncode != 0
    assert "production" in refused.stderr and "Traceback" not in refused.stderr
    cli("models", "delete", "iris:2")
    gone = cli("models", "show", "iris:2", check=False)
    assert gone.returncode == 3 and len(gone.stderr.strip().splitlines()) == 1
    assert json.loads(cli("models", "show", "iris:1", "--json").stdout)["version"] == 1


def test_pickle_needs_trust(cli: CliRunner, iris_files: dict[str, Path]) -> None:
    refused = cli("models", "register", "iris", str(iris_files["pickle"]), check=False)
    assert refused.returncode != 0 and "--trust-pickle" in refused.stderr
    assert "Traceback" not in refused.stderr
    ok = cli("models", "register", "iris", str(iris_files["pickle"]), "--trust-pickle", "--json")
    assert json.loads(ok.stdout)["version"] == 1


def test_bad_input_is_one_line_and_nonzero(
    cli: CliRunner, iris_files: dict[str, Path], tmp_path: Path
) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a model at all")
    cases = [
        ("models", "register", "iris", str(tmp_path / "missing.onnx")),
        ("models", "register", "iris", str(garbage)),
        ("models", "register", "bad name!", str(iris_files["skops"])),
        ("models", "register", "iris", str(iris_files["skops"]), "--tag", "notakeyvalue"),
        ("models", "register", "iris", str(iris_files["skops"]), "--framework", "tensorflow"),
        ("models", "show", "nosuchmodel:1"),
        ("models", "show", "iris@nosuchalias"),
        ("models", "delete", "iris"),
        ("models", "alias", "iris", "7", "production"),
    ]
    for args in cases:
        proc = cli(*args, check=False)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, proc.stderr)
    # nothing half-written: the registry is still empty and usable
    assert json.loads(cli("models", "list", "--json").stdout) == []
