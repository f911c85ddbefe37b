"""PyTorch files → an in-memory model: TorchScript, torch.export programs (.pt2), torch.save'd modules.

Everything is read with torch's restricted loaders first, so a state_dict or a checkpoint is recognised and
explained without running code; only a module pickled whole needs --trust-pickle and its class importable.
Every refusal names a way that works.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import ConversionError
from conveyor.formats import detect
from conveyor.formats.parity import first_line
from conveyor.formats.pickles import main_classes, refuse_pickle, unimportable

INSTEAD = (
    "save the model with its code instead — torch.export.save(torch.export.export(model, (x,)), 'model.pt2') "
    "or torch.jit.save(torch.jit.script(model), 'model.pt') — or register the module object through the "
    "Python API: conveyor.register(name, model, sample=x)"
)


def load_torch_file(path: Path, kind: str, *, trust_pickle: bool) -> Any:
    """A TorchScript module, an ExportedProgram, or (with trust) a module saved whole with ``torch.save``."""
    from conveyor.formats.torch import torch_module

    torch = torch_module()
    if kind == detect.TORCHSCRIPT:
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise ConversionError(f"cannot load TorchScript file {path.name}: {first_line(e)}") from e
    if kind == detect.TORCH_EXPORT:
        return _load_export(torch, path, trust_pickle)
    return _load_saved(torch, path, trust_pickle)


def _load_export(torch: Any, path: Path, trust_pickle: bool) -> Any:
    # torch.export.load falls back to plain unpickling for pickled weights, custom objects and sample inputs
    # that the restricted loader refuses: refuse those here unless trusted, so loading never runs code unasked
    if not trust_pickle:
        pickled = _pickled_parts(torch, path)
        if pickled:
            raise refuse_pickle(path, f" (its {', '.join(pickled)} are pickled Python objects)")
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # a foreign or newer archive, an AOTInductor package
        raise ConversionError(
            f"cannot load {path.name} with torch.export.load: {first_line(e)}; save it with "
            "torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
        ) from e
    return program


def _pickled_parts(torch: Any, path: Path) -> list[str]:
    """What in a .pt2 archive only a full unpickler can read: [] when its data is plain tensors."""
    parts: set[str] = set()
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith("_config.json") and "/data/" in name:
                    entries = json.loads(z.read(name)).get("config", {})
                    for entry in entries.values():
                        custom = not str(entry.get("path_name", "")).startswith(("weight", "tensor"))
                        if entry.get("use_pickle") or custom:
                            parts.add("weights" if "/weights/" in name else "constants")
                elif "/sample_inputs/" in name:
                    try:
                        torch.load(io.BytesIO(z.read(name)), weights_only=True)
                    except Exception:  # names a class outside torch's safe list
                        parts.add("sample inputs")
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError) as e:
        raise ConversionError(f"cannot read {path.name} as a torch.export archive: {first_line(e)}") from e
    return sorted(parts)


def _load_saved(torch: Any, path: Path, trust_pickle: bool) -> Any:
    stranded = main_classes(path)  # read from the pickle's opcodes, not run
    if stranded:
        raise ConversionError(
            f"{path.name} holds a module saved whole with torch.save: {unimportable(stranded)}; {INSTEAD}"
        )
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # it names classes beyond tensors and containers: a pickled module, loaded below with trust
    except Exception as e:
        raise ConversionError(f"cannot load {path.name} with torch.load: {first_line(e)}") from e
    else:
        raise _not_a_module(torch, path, weights)
    if not trust_pickle:
        raise refuse_pickle(path, f"; or {INSTEAD}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as e:  # the module's class cannot be imported in this process
        raise ConversionError(
            f"cannot load {path.name}: {first_line(e)}; a module saved whole loads only where its class is "
            f"importable (its module on PYTHONPATH); or {INSTEAD}"
        ) from e
    except Exception as e:
        raise ConversionError(f"cannot load {path.name} with torch.load: {first_line(e)}") from e
    if not isinstance(obj, torch.nn.Module):
        raise _not_a_module(torch, path, obj)
    return obj


def _not_a_module(torch: Any, path: Path, obj: object) -> ConversionError:
    """Why weights (or anything else torch.load gave) cannot be served, and what to do."""
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)
        shown = ", ".join(map(str, keys[:3])) + (", ..." if len(keys) > 3 else "")
        return ConversionError(
            f"{path.name} holds a state_dict ({len(keys)} tensors: {shown}): weights without the module's "
            "code cannot be served; build the module, call model.load_state_dict(torch.load(path)), then "
            "register it through the Python API — conveyor.register(name, model, sample=x) — or save it "
            "with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
        )
    if isinstance(obj, Mapping):
        names = ", ".join(map(repr, list(obj)[:5]))
        return ConversionError(
            f"{path.name} holds a dict ({names}), not a module — a training checkpoint? Load its state_dict "
            f"into your module and register that; {INSTEAD}"
        )
    return ConversionError(f"{path.name} holds a {type(obj).__name__}, not a torch.nn.Module; {INSTEAD}")
