"""docs/cli.md is generated from the Typer app; if a command changes, `make docs` must be rerun."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_cli_reference_matches_the_code(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    typer = Path(sys.executable).parent / "typer"
    subprocess.run(
        [
            str(typer),
            "conveyor.cli.app",
            "utils",
            "docs",
            "--name",
            "conveyor",
            "--title",
            "CLI reference",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert (REPO / "docs" / "cli.md").read_text() == out.read_text(), "docs/cli.md is stale: run `make docs`"
