"""Starting the CLI loads no database stack and no numpy: every `conveyor` command pays for what the CLI
imports at start (the suite and scripts run thousands of them), and most commands need neither."""

import subprocess
import sys


def test_importing_the_cli_loads_neither_sqlalchemy_nor_alembic_nor_numpy() -> None:
    heavy = "{'sqlalchemy', 'alembic', 'numpy', 'onnxruntime', 'conveyor.api'}"
    code = f"import sys, conveyor.cli.main; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_python_api_still_loads_on_first_use() -> None:
    code = "import conveyor; print(conveyor.register.__module__, conveyor.Model.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["conveyor.api", "Model"]


def test_a_command_line_builds_only_the_branch_it_runs() -> None:
    code = (
        "import sys; from conveyor.cli.commands import COMMANDS, build, requested;"
        "build(requested(['version']));"
        "print(sorted({f'conveyor.cli.{e.module}' for e in COMMANDS.values()} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_whole_tree_is_built_for_help_and_anything_not_a_command() -> None:
    from conveyor.cli.commands import COMMANDS, build, requested

    assert requested(["models", "list"]) == "models"
    assert requested(["version"]) == "version"
    for args in ([], ["--help"], ["-h", "models"], ["modles", "list"]):
        assert requested(args) is None
    import typer.main

    names = set(typer.main.get_command(build()).commands)  # type: ignore[attr-defined]
    assert names == {*COMMANDS, "version"}
    assert set(typer.main.get_command(build("models")).commands) == {"models"}  # type: ignore[attr-defined]
