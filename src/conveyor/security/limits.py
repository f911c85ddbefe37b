"""Limits on what a client may send: how deeply a JSON (or YAML) document nests.

orjson stops at 1024 levels, Python's json and PyYAML's composer recurse until the interpreter's stack gives
out (a RecursionError, not a clear answer), and numpy reads at most 64 dimensions. So every parser checks
nesting against one documented limit (the ``max_json_depth`` setting), and answers 400 naming it.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import InvalidInput

DEFAULT_MAX_JSON_DEPTH = 64
"""The default of the ``max_json_depth`` setting: as deep as numpy's 64 dimensions, far deeper than any V2
request (a 4-d tensor in nested lists is 7 levels) or spec (about 6) needs."""


def depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed JSON: dicts, lists, scalars) nests more than ``limit`` containers deep.

    ``{}`` and ``[]`` are one level, ``{"a": [1]}`` two. Iterative, and it stops at the first branch over
    the limit, so a hostile document costs at most one walk of what was parsed.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def list_depth(value: Any) -> int:
    """How many lists deep the first element chain of ``value`` goes (``[[1, 2]]`` is 2, a scalar 0).

    For tensor data: numpy refuses ragged nesting, so the first chain is the data's depth; following it
    costs one step per level whatever the tensor's size."""
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


def too_deep(what: str, limit: int) -> InvalidInput:
    """The error a document nested deeper than ``limit`` gets (HTTP 400)."""
    return InvalidInput(f"{what} is nested more than {limit} levels deep (the max_json_depth limit)")


def check_depth(what: str, value: Any, limit: int) -> None:
    """InvalidInput naming the limit when ``value`` nests deeper than ``limit``."""
    if depth_over(value, limit):
        raise too_deep(what, limit)
