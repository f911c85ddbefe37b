"""Starting the CLI loads no database stack: `conveyor serve FILE` never needs it and paid ~30 MB for it."""

import subprocess
import sys


def test_importing_the_cli_loads_neither_sqlalchemy_nor_alembic() -> None:
    code = "import sys, conveyor.cli.main; print(sorted({'sqlalchemy', 'alembic'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
