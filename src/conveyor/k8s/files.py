"""One YAML document per file, named ``KIND-NAME.yaml`` (``service-iris-v3.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from conveyor import errors
from conveyor.files import replacing


def file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def to_yaml(obj: dict[str, Any]) -> str:
    return str(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))


def write_objects(objects: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Write each object to its file under ``folder`` (created); InvalidInput when two share a name."""
    names = [file_name(obj) for obj in objects]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise errors.InvalidInput(f"two objects would be written to the same file: {', '.join(twice)}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, obj in zip(names, objects, strict=True):
        path = folder / name
        with replacing(path) as f:
            f.write(to_yaml(obj).encode())
        paths.append(path)
    return paths
