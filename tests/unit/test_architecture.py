"""The dependency rules of docs/architecture.md, checked on every module's imports (parsed, not run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import conveyor

SRC = Path(conveyor.__file__).parent

# part of the tree -> packages it must never import, lazily or under TYPE_CHECKING included
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "gateway": ("server",),
    "control": ("server",),
    "frontend": ("server", "runtime", "gateway", "control"),
    "registry": ("server", "gateway", "control"),
    "formats": ("server", "gateway", "control"),
    "spec": ("server", "gateway", "control"),
    "protocol": ("runtime", "server", "gateway", "control"),
    # Offline tools: they start servers as processes and talk to them over HTTP, never import them.
    **{
        tool: ("server", "gateway", "control")
        for tool in ("optimize", "fuse", "tune", "validate", "edge", "k8s", "cicd", "container")
    },
}
# targets/ builds a replica's DataPlane for in-process placement: it may import server, but only inside a
# function, so a gateway of replica processes never loads ONNX Runtime.
LAZY_ONLY: dict[str, tuple[str, ...]] = {"targets": ("server",)}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> Iterator[tuple[list[str], int, bool]]:
    """(modules it may load, line, at module level) for every import statement in ``path``, relative ones
    resolved; ``from a import b`` may load ``a`` or ``a.b``."""
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    top_level |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}
    for node in ast.walk(tree):
        at_top = id(node) in top_level
        if isinstance(node, ast.Import):
            yield [alias.name for alias in node.names], node.lineno, at_top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield [base, *(f"{base}.{alias.name}" for alias in node.names)], node.lineno, at_top


def _hits(module: str, part: str) -> bool:
    return module == f"conveyor.{part}" or module.startswith(f"conveyor.{part}.")


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).parts[0]
        for modules, line, at_top in imports(path, root):
            lazy_only = LAZY_ONLY.get(where, ()) if at_top else ()
            for part in (*FORBIDDEN.get(where, ()), *lazy_only):
                hit = next((m for m in modules if _hits(m, part)), None)
                if hit is not None:
                    late = " at load" if part in lazy_only else ""
                    found.append(f"{path.relative_to(root)}:{line} ({where}/) imports {hit}{late}")
    return found


def test_every_module_keeps_the_dependency_rules_of_the_architecture() -> None:
    assert violations(SRC) == []


def test_the_check_sees_lazy_relative_and_from_imports(tmp_path: Path) -> None:
    root = tmp_path / "conveyor"
    (root / "gateway").mkdir(parents=True)
    (root / "targets").mkdir()
    (root / "gateway" / "a.py").write_text("def f():\n    from conveyor.server.dataplane import DataPlane\n")
    (root / "gateway" / "b.py").write_text("from .. import server\n")
    (root / "targets" / "c.py").write_text("from conveyor.server.app import create_app\n")
    (root / "targets" / "d.py").write_text("def f():\n    import conveyor.server.app\n")
    assert violations(root) == [
        "gateway/a.py:2 (gateway/) imports conveyor.server.dataplane",
        "gateway/b.py:1 (gateway/) imports conveyor.server",
        "targets/c.py:1 (targets/) imports conveyor.server.app at load",
    ]


# Processes are signalled and read in one place (conveyor/processes.py, and the local target built on it):
# the control plane talks to replicas through the Target interface, never with POSIX signals; `up`'s
# supervisor only handles its own SIGINT/SIGTERM.
SIGNAL_ALLOWED_IN_CONTROL = {"control/supervisor.py"}


def signal_users(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "control").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in SIGNAL_ALLOWED_IN_CONTROL:
            continue
        for modules, line, _ in imports(path, root):
            if any(m == "signal" or m.startswith("signal.") for m in modules):
                found.append(f"{rel}:{line} imports signal")
    return found


def proc_readers(root: Path) -> list[str]:
    found = set()  # an f-string and its first part are both seen
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "processes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            parts = node.values if isinstance(node, ast.JoinedStr) else [node]
            first = parts[0] if parts else None
            if isinstance(first, ast.Constant) and str(first.value).startswith("/proc/"):
                found.add(f"{rel}:{first.lineno} reads /proc")
    return sorted(found)


def test_the_control_plane_never_signals_a_process_itself() -> None:
    assert signal_users(SRC) == []


def test_only_conveyor_processes_reads_proc() -> None:
    assert proc_readers(SRC) == []


def test_the_process_checks_see_signal_imports_and_proc_paths(tmp_path: Path) -> None:
    root = tmp_path / "conveyor"
    (root / "control").mkdir(parents=True)
    (root / "control" / "reconciler.py").write_text("import signal\n")
    (root / "control" / "supervisor.py").write_text("import signal\n")
    (root / "control" / "b.py").write_text("def f():\n    from signal import SIGKILL\n")
    (root / "a.py").write_text("pid = 1\nstat = f'/proc/{pid}/stat'\n")
    (root / "processes.py").write_text("pid = 1\nstat = f'/proc/{pid}/stat'\n")
    assert signal_users(root) == ["control/b.py:2 imports signal", "control/reconciler.py:1 imports signal"]
    assert proc_readers(root) == ["a.py:2 reads /proc"]
