"""`conveyor dashboard`: the dashboard's URL with the token the CLI would send in its fragment, or without."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import CliRunner


def test_on_this_machine_the_url_carries_the_local_admin_token(
    cli: CliRunner, cli_env: dict[str, str]
) -> None:
    token_file = Path(cli_env["CONVEYOR_HOME"]) / "admin.token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("cvy_local+admin/token\n")
    out = cli("dashboard", "--url", "http://127.0.0.1:8123")
    assert out.stdout == "http://127.0.0.1:8123/ui/#token=cvy_local%2Badmin%2Ftoken\n"
    assert out.stderr == ""
    bare = cli("dashboard", "--url", "http://127.0.0.1:8123/", "--no-token")
    assert bare.stdout == "http://127.0.0.1:8123/ui/\n"
    scripted = json.loads(cli("dashboard", "--json").stdout)  # CONVEYOR_URL unset: the default control plane
    assert scripted == {"url": "http://127.0.0.1:8000/ui/#token=cvy_local%2Badmin%2Ftoken", "token": True}


def test_another_host_gets_no_local_token_and_the_page_will_ask(
    cli: CliRunner, cli_env: dict[str, str]
) -> None:
    (Path(cli_env["CONVEYOR_HOME"])).mkdir(parents=True, exist_ok=True)
    (Path(cli_env["CONVEYOR_HOME"]) / "admin.token").write_text("local-only\n")
    out = cli("dashboard", "--url", "https://cp.example.com:8000")
    assert out.stdout == "https://cp.example.com:8000/ui/\n"
    assert "the page will ask for one" in out.stderr
    cli_env["CONVEYOR_TOKEN"] = "mine"  # a token the user set is theirs to use anywhere
    assert cli("dashboard", "--url", "https://cp.example.com:8000").stdout.endswith("/ui/#token=mine\n")


def test_a_bad_url_is_one_error_line_and_a_failing_exit(cli: CliRunner) -> None:
    out = cli("dashboard", "--url", "ftp://somewhere", check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.strip().startswith("error: invalid URL 'ftp://somewhere'")
    assert len(out.stderr.strip().splitlines()) == 1
