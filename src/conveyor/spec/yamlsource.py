"""YAML documents to plain Python values, with the line of every field, for errors that point at the file.

PyYAML's composer gives nodes with marks; this walks them once, keeping a map from field path to line.
Nesting is limited (PyYAML's composer recurses: 1,000 levels of ``[`` was a RecursionError) and so is the
number of values aliases expand to (a few lines of ``&a [*b, *b, ...]`` expand exponentially).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH

Path = tuple[str | int, ...]
MAX_VALUES = 100_000
"""Values (mappings, lists, scalars) one text may expand to, aliases counted each time they are used."""


@dataclass
class Document:
    """One YAML document: its value, the 1-based line of each path, and problems found while reading it."""

    value: Any
    lines: dict[Path, int]
    problems: list[tuple[int, Path, str]] = field(default_factory=list)

    def line_of(self, path: Path) -> int:
        """The line of ``path``, else of its nearest ancestor in the file (as for a missing field)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1


class YamlSyntaxError(Exception):
    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """The safe loader, refusing collections nested deeper than ``max_depth`` before composing them."""

    max_depth = DEFAULT_MAX_JSON_DEPTH
    depth = 0
    values = 0  # counted by _value, across the documents of one text

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.depth >= self.max_depth and self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            raise yaml.composer.ComposerError(
                None, None, _too_deep(self.max_depth), self.peek_event().start_mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def _too_deep(limit: int) -> str:
    return f"nested more than {limit} levels deep (the max_json_depth limit)"


def read_documents(text: str, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> list[Document]:
    """Every non-empty document in ``text``; YamlSyntaxError on text that is not YAML, nests deeper than
    ``max_depth`` or expands (aliases) to more than MAX_VALUES values."""
    try:  # the reader checks every character up front: a control character fails here
        loader = _Loader(text)
        loader.max_depth = max_depth
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise YamlSyntaxError(line, column, f"unacceptable character #x{exc.character:04x}") from None
    documents: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = Document(value=None, lines={(): node.start_mark.line + 1})
            doc.value = _value(loader, node, (), doc, frozenset())
            if doc.value is not None:
                documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(line, column, problem or "invalid YAML") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, 1, str(exc)) from None
    finally:
        loader.dispose()
    return documents


def _value(loader: _Loader, node: yaml.Node, path: Path, doc: Document, seen: frozenset[int]) -> Any:
    if id(node) in seen:  # an alias pointing at one of its own ancestors
        doc.problems.append((node.start_mark.line + 1, path, "recursive YAML alias"))
        return None
    loader.values += 1
    deep = len(seen) >= loader.max_depth and isinstance(node, yaml.CollectionNode)
    if deep or loader.values > MAX_VALUES:  # aliases nest and repeat what the composer checked
        mark = node.start_mark
        raise YamlSyntaxError(
            mark.line + 1, mark.column + 1, _too_deep(loader.max_depth) if deep else _too_many()
        )
    inside = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves '<<' merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                doc.problems.append((line, path, f"field names must be strings, got {key!r}"))
                continue
            if key in result:
                first = doc.lines[(*path, key)]
                doc.problems.append((line, (*path, key), f"duplicate field (first at line {first})"))
                continue
            doc.lines[(*path, key)] = line
            result[key] = _value(loader, value_node, (*path, key), doc, inside)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            doc.lines[(*path, index)] = item_node.start_mark.line + 1
            items.append(_value(loader, item_node, (*path, index), doc, inside))
        return items
    return loader.construct_object(node, deep=True)


def _too_many() -> str:
    return f"more than {MAX_VALUES} values once aliases are expanded"
