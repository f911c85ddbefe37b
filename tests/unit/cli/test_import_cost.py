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
