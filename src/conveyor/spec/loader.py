"""Reading and writing spec files: ``load_documents``, ``load_file``, ``dump_yaml``.

Every problem in a file is reported at once, one ``source:line: path: message`` line each.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from conveyor import errors
from conveyor.security.limits import DEFAULT_MAX_JSON_DEPTH
from conveyor.spec.resources import API_VERSION, KINDS, Resource
from conveyor.spec.yamlsource import Document, YamlSyntaxError, read_documents
from conveyor.spec.yamlsource import Path as FieldPath

_TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}
_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def load_file(path: str | Path, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> list[Resource]:
    """The resources in the YAML file at ``path``; InvalidInput lists every problem in it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InvalidInput(f"cannot read spec file {path}: {exc}") from None
    return load_documents(text, source=str(path), max_depth=max_depth)


def load_documents(
    text: str, source: str = "<string>", max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> list[Resource]:
    """The resources in a (multi-document) YAML text; InvalidInput lists every problem in it (nesting
    deeper than ``max_depth``, the max_json_depth setting, is one)."""
    try:
        documents = read_documents(text, max_depth)
    except YamlSyntaxError as exc:
        message = f"{source}:{exc.line}:{exc.column}: invalid YAML: {exc.message}"
        raise errors.InvalidInput(message, source=source, problems=[message]) from None
    if not documents:
        message = f"{source}:1: the file holds no document"
        raise errors.InvalidInput(message, source=source, problems=[message])

    problems: list[tuple[int, str]] = []
    resources: list[Resource] = []
    first_line_of_name: dict[tuple[str, str], int] = {}
    for doc in documents:
        problems += [(line, _line_text(path, msg)) for line, path, msg in doc.problems]
        resource = _resource(doc, problems)
        if resource is None:
            continue
        key = (type(resource).kind_name, resource.metadata.name)
        line = doc.line_of(("metadata", "name"))
        if key in first_line_of_name:
            problems.append(
                (
                    line,
                    f"metadata.name: duplicate {key[0]} {key[1]!r} (first at line {first_line_of_name[key]})",
                )
            )
        else:
            first_line_of_name[key] = line
        resources.append(resource)
    if problems:
        problems.sort(key=lambda problem: problem[0])
        lines = [f"{source}:{line}: {text}" for line, text in problems]
        raise errors.InvalidInput("\n".join(lines), source=source, problems=lines)
    return resources


def dump_yaml(resources: Iterable[Resource]) -> str:
    """The resources as a multi-document YAML text that ``load_documents`` reads back equal."""
    documents = [resource.to_dict() for resource in resources]
    text: str = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True, allow_unicode=True)
    return text


def _resource(doc: Document, problems: list[tuple[int, str]]) -> Resource | None:
    """The validated resource of one document, or None after adding its problems to ``problems``."""
    data = doc.value
    if not isinstance(data, Mapping):
        problems.append((doc.line_of(()), f"a document must be a mapping, got {_type_name(data)}"))
        return None
    api_version, kind = data.get("apiVersion"), data.get("kind")
    bad = False
    if api_version != API_VERSION:
        what = "missing" if api_version is None else f"unsupported {api_version!r}"
        problems.append((doc.line_of(("apiVersion",)), f"apiVersion: {what}; supported: {API_VERSION}"))
        bad = True
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        what = "missing" if kind is None else f"unsupported {kind!r}"
        problems.append((doc.line_of(("kind",)), f"kind: {what}; supported: {', '.join(sorted(KINDS))}"))
        bad = True
    if bad or model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = tuple(error["loc"])
            problems.append((doc.line_of(path), _line_text(path, _message(model, error))))
        return None


def _message(model: type[BaseModel], error: Any) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        allowed = _fields_at(model, tuple(error["loc"])[:-1])
        typo = str(error["loc"][-1])
        close = [name for name in allowed if name.lower().startswith(typo.lower())]
        close = close if len(close) == 1 else difflib.get_close_matches(typo, allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown field; {hint}allowed: {', '.join(allowed)}"
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]}, got {_type_name(value)} {value!r}"
    if kind == "literal_error":
        return f"{value!r} is not one of {error['ctx']['expected']}"
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        bound = error["ctx"][key]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"must be {op} {bound}, got {value!r}"
    message = str(error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return message


def _fields_at(model: type[BaseModel], path: FieldPath) -> list[str]:
    """The YAML names of the fields allowed at ``path`` inside ``model`` (empty if not a model there)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        fields = {info.alias or name: info for name, info in current.model_fields.items()}
        info = fields.get(part)
        if info is None:
            return []
        current = next(
            (t for t in _types(info.annotation) if isinstance(t, type) and issubclass(t, BaseModel)), None
        )
        if current is None:
            return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _types(annotation: Any) -> tuple[Any, ...]:
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    return args or (annotation,)


def _line_text(path: FieldPath, message: str) -> str:
    return f"{dotted_path(path)}: {message}" if path else message


def dotted_path(path: FieldPath) -> str:
    """A field path as the spec and the API spell it: ``spec.autoscaling.maxReplicas``, ``routes[0].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _type_name(value: object) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)
