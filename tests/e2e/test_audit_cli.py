"""`conveyor audit ...`: the changes a user made show up in the log, and a record edited, deleted or swapped
in the database file makes `audit verify` fail, naming the seq."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.homes import copy_home, home_env, run_cli

DATA_LOSS = 5


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, logreg_onnx: Path) -> Path:
    """A home where alice, through the CLI, registered iris:1 (alias staging) and iris:2 and pointed
    production at 2: three audit records. Each test changes a copy (``copy_home``)."""
    home = tmp_path_factory.mktemp("audit") / "home"
    env = home_env(home, CONVEYOR_USER="alice")
    run_cli(env, "models", "register", "iris", str(logreg_onnx), "--alias", "staging")
    run_cli(env, "models", "register", "iris", str(logreg_onnx))
    run_cli(env, "models", "alias", "iris", "2", "production")
    return home


def _db(cli_env: dict[str, str]) -> sqlite3.Connection:
    return sqlite3.connect(Path(cli_env["CONVEYOR_HOME"]) / "registry.db", isolation_level=None)


def test_audit_log_shows_each_change_with_who_made_it(
    cli: CliRunner, cli_env: dict[str, str], history: Path
) -> None:
    copy_home(history, cli_env)
    log = json.loads(cli("audit", "log", "--json").stdout)
    assert [(r["seq"], r["action"], r["object"], r["actor"]) for r in log] == [
        (1, "model.register", "iris:1", "alice"),
        (2, "model.register", "iris:2", "alice"),
        (3, "alias.set", "iris@production", "alice"),
    ]
    assert log[0]["details"]["aliases"] == ["staging"]
    assert log[2]["details"] == {"version": 2, "previous_version": None}
    assert log[1]["prev_hash"] == log[0]["hash"]
    table = cli("audit", "log").stdout
    assert "alias.set" in table and "iris@production" in table and "version=2" in table
    assert [r["seq"] for r in json.loads(cli("audit", "log", "--limit", "1", "--json").stdout)] == [3]
    assert json.loads(cli("audit", "log", "--since", "1h", "--json").stdout) == log
    assert json.loads(cli("audit", "log", "--since", "2999-01-01T00:00", "--json").stdout) == []
    out = cli("audit", "verify")
    assert out.stdout.startswith("3 records, chain intact")
    assert json.loads(cli("audit", "verify", "--json").stdout)["intact"] is True


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "seq 2 (edited)"),
        ("DELETE FROM audit_log WHERE seq = 2", "seq 2 (removed)"),
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 1; UPDATE audit_log SET seq = 1 WHERE seq = 2; "
            "UPDATE audit_log SET seq = 2 WHERE seq = -1",
            "seq 1 (reordered)",
        ),
    ],
    ids=["edited", "deleted", "swapped"],
)
def test_audit_verify_fails_naming_the_first_tampered_record(
    cli: CliRunner, cli_env: dict[str, str], history: Path, sql: str, named: str
) -> None:
    copy_home(history, cli_env)
    with _db(cli_env) as db:
        db.executescript(sql)
    out = cli("audit", "verify", check=False)
    assert out.returncode == DATA_LOSS, out.stderr
    assert f"audit log broken at {named}" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    report = json.loads(cli("audit", "verify", "--json", check=False).stdout)
    assert report["intact"] is False and report["problem"]["seq"] == int(named.split()[1])


def test_a_bad_since_is_one_line_and_exit_2(cli: CliRunner) -> None:
    out = cli("audit", "log", "--since", "yesterday", check=False)
    assert out.returncode == 2
    assert "--since 'yesterday': use a duration" in out.stderr


def test_an_empty_log_verifies(cli: CliRunner) -> None:
    assert cli("audit", "verify").stdout.startswith("0 records, chain intact")
    assert "No audit records yet." in cli("audit", "log").stdout
