"""`conveyor backup` / `conveyor restore` through the real executable: round trip, refusals, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import conveyor_exe


def test_backup_then_restore_into_a_new_home(
    cli: CliRunner, cli_env: dict[str, str], iris_files: dict[str, Path], tmp_path: Path
) -> None:
    cli("models", "register", "iris", str(iris_files["skops"]), "--alias", "production", "--tag", "team=ml")
    cli("models", "register", "iris", str(iris_files["skops"]), "--parent-version", "1")
    archive = tmp_path / "registry.tar.gz"
    made = json.loads(cli("backup", str(archive), "--json").stdout)
    assert (made["models"], made["versions"], made["aliases"]) == (1, 2, 1)
    assert made["artifacts"] in (1, 2) and made["artifact_bytes"] > 0  # equal conversions share one blob
    assert made["audit_records"] == 2
    table = cli("backup", str(tmp_path / "again.tar")).stdout
    assert "Backed up to again.tar" in table and "versions" in table and "audit records" in table

    other = {**cli_env, "CONVEYOR_HOME": str(tmp_path / "other")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([conveyor_exe(), *args], env=other, capture_output=True, text=True, timeout=120)

    restored = run("restore", str(archive), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout) == made
    chain = json.loads(run("audit", "verify", "--json").stdout)
    assert (
        chain["intact"]
        and chain["head_hash"] == json.loads(cli("audit", "verify", "--json").stdout)["head_hash"]
    )
    before = json.loads(cli("models", "list", "--json").stdout)
    assert json.loads(run("models", "list", "--json").stdout) == before
    again = run("models", "register", "iris", str(iris_files["skops"]), "--json")
    assert json.loads(again.stdout)["version"] == 3

    refused = run("restore", str(archive))
    assert refused.returncode == 4
    assert refused.stderr.strip().startswith("error: restore needs an empty registry")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_corrupt_archive_exits_5_with_one_line(cli: CliRunner, tmp_path: Path) -> None:
    cli("backup", str(tmp_path / "empty.tar.gz"))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes((tmp_path / "empty.tar.gz").read_bytes()[:40])
    proc = cli("restore", str(cut), check=False)
    assert proc.returncode == 5
    assert "truncated or corrupt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    missing = cli("restore", str(tmp_path / "nope.tar.gz"), check=False)
    assert missing.returncode == 3
