"""How ``--help`` and docs/cli.md label a parameter's value: TEXT, INTEGER, PATH, or nothing for a flag.

Typer 0.29 labels every parameter with its Python annotation (``<bool>`` on each flag, ``<list[str]>`` on a
repeatable option). Both its Rich help and its Markdown docs take the label from one method of its parameter
classes, which has no hook per app; ``install()`` replaces that method, once, when the CLI is imported.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption

# Typer's label (between its angle brackets) -> the word users know from click and most CLIs.
WORDS = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",  # the range itself is printed next to it: [0<=x<=65535]
    "float": "FLOAT",
    "float range": "FLOAT",
    "bool": "BOOLEAN",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIRECTORY",
    "datetime": "DATETIME",
}

_typer_label = TyperArgument.display_type  # the same method for arguments and options


def label(param: TyperArgument | TyperOption, ctx: Any) -> str | None:
    """The value label of ``param``: None for a flag (it takes no value), else a word or the choices."""
    if isinstance(param, TyperOption):
        if param.metavar is not None:
            return param.metavar
        if param.is_flag or param.count:
            return None
    raw = _typer_label(param, ctx).removeprefix("<").removesuffix(">")
    if raw.startswith("list[") and raw.endswith("]"):  # a repeatable option: each use takes one value
        raw = raw[len("list[") : -1]
    if "|" in raw:  # choices
        return f"[{raw}]"
    return WORDS.get(raw, raw.upper())


def install() -> None:
    """Make Typer's help and docs use ``label`` (idempotent)."""
    TyperArgument.display_type_rich = label  # type: ignore[method-assign,assignment]
    TyperOption.display_type_rich = label  # type: ignore[method-assign,assignment]
