"""PyTorch modules and torch.export programs → ONNX with the TorchScript exporter, checked against the model.

torch 2.13's default exporter (dynamo) needs onnxscript, which Conveyor does not ship (and which cannot be
fetched offline); the TorchScript-based exporter (``dynamo=False``) is deprecated there but works and needs
nothing more. It traces a torch.export program through ``program.module()`` (see torch_export.py).
"""

from __future__ import annotations

import io
import sys
import warnings
from typing import Any

import numpy as np

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import first_line, max_abs_diff, report, run_onnx
from conveyor.formats.result import ImportResult, signature_of
from conveyor.formats.samples import Array, Sample, rows

TORCH_EXTRA = "PyTorch support needs the torch extra: pip install 'conveyor[torch]'"


def is_module(obj: object) -> bool:
    """A torch.nn.Module or a torch.export program."""
    # a torch object can only exist once torch is imported, so never import it just to ask
    torch = sys.modules.get("torch")
    return torch is not None and (isinstance(obj, torch.nn.Module) or is_program(obj))


def is_program(obj: object) -> bool:
    torch = sys.modules.get("torch")
    export = getattr(torch, "export", None)
    return export is not None and isinstance(obj, export.ExportedProgram)


def import_torch(
    model: Any, *, sample: Sample | None, tolerance: float, opset: int | None, origin: str = ""
) -> ImportResult:
    """Export with dim 0 dynamic; parity on the sample and on its first row (the batch is not baked in).

    A torch.export program is exported through its module; its batch is dynamic only where the program's
    is, and without a sample its own example inputs are the sample.
    """
    torch = torch_module()
    dynamic = True
    if is_program(model):
        from conveyor.formats.torch_export import program_module

        model, sample, dynamic = program_module(model, sample)
    desc = describe(model)
    if sample is None:
        raise ConversionError(
            f"importing a PyTorch model needs a sample: it defines the input shapes ({desc})"
        )
    arrays = _positional(sample)
    names = list(arrays)
    was_training = model.training
    model.eval()  # the exporter traces in eval mode; parity must compare against the same mode
    try:
        with torch.no_grad():
            expected = _run(model, arrays, desc)
            out_names = ["output"] if len(expected) == 1 else [f"output_{i}" for i in range(len(expected))]
            data = _export(model, arrays, names, out_names, expected, opset, desc, dynamic)
            signature = signature_of(data, dynamic_batch=dynamic)
            n = rows(sample)
            per_output = _diffs(data, arrays, expected, out_names)
            if n > 1 and dynamic:
                first = {k: v[:1] for k, v in arrays.items()}
                for name, diff in _diffs(data, first, _run(model, first, desc), out_names).items():
                    per_output[name] = max(per_output[name], diff)
            parity = report(per_output, tolerance, n)
    finally:
        model.train(was_training)
    return ImportResult(
        onnx_bytes=data,
        framework="pytorch",
        signature=signature,
        parity=parity,
        source=f"pytorch {desc}{origin}",
    )


def describe(model: object) -> str:
    program = getattr(model, "program_description", None)  # set by torch_export.program_module
    if isinstance(program, str):
        return program
    original = getattr(model, "original_name", None)  # the class a TorchScript module was scripted from
    if type(model).__name__ == "RecursiveScriptModule" and isinstance(original, str):
        return f"TorchScript {original}"
    return type(model).__name__


def torch_module() -> Any:
    try:
        import torch
    except ImportError:
        raise ConversionError(TORCH_EXTRA) from None
    return torch


def _positional(sample: Sample) -> dict[str, Array]:
    """Input name -> array in forward()'s order: an array is named ``input``, a dict keeps its keys."""
    if isinstance(sample, dict):
        return dict(sample)
    return {"input": sample}


def _tensors(model: Any, arrays: dict[str, Array]) -> tuple[Any, ...]:
    torch = torch_module()
    param = next(iter(model.parameters()), None)
    float_dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    # samples read from CSV are float64; a float32 net must be traced and compared in its own precision
    return tuple(
        torch.from_numpy(np.ascontiguousarray(a)).to(float_dtype)
        if a.dtype.kind == "f"
        else torch.from_numpy(np.ascontiguousarray(a))
        for a in arrays.values()
    )


def _run(model: Any, arrays: dict[str, Array], desc: str) -> list[Array]:
    torch = torch_module()
    try:
        out = model(*_tensors(model, arrays))
    except Exception as e:  # wrong shape or dtype for this module
        raise InvalidInput(f"{desc} fails on the sample: {first_line(e)}") from e
    outs = list(out) if isinstance(out, tuple | list) else [out]
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        raise ConversionError(
            f"{desc} must return a tensor or a tuple of tensors; it returned {type(out).__name__}"
        )
    return [o.detach().cpu().numpy() for o in outs]


def _export(
    model: Any,
    arrays: dict[str, Array],
    names: list[str],
    out_names: list[str],
    expected: list[Array],
    opset: int | None,
    desc: str,
    dynamic: bool,
) -> bytes:
    torch = torch_module()
    dynamic_axes: dict[str, dict[int, str]] = {}
    if dynamic:
        dynamic_axes = {name: {0: "batch"} for name in names}
        dynamic_axes.update(
            {name: {0: "batch"} for name, o in zip(out_names, expected, strict=True) if o.ndim}
        )
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice; parity catches bad traces
            torch.onnx.export(
                model,
                _tensors(model, arrays),
                buf,
                dynamo=False,
                input_names=names,
                output_names=out_names,
                dynamic_axes=dynamic_axes or None,
                opset_version=opset,
            )
    except Exception as e:  # unsupported operators, untraceable control flow, bad opset
        raise ConversionError(f"torch.onnx cannot export {desc}: {first_line(e)}") from e
    return buf.getvalue()


def _diffs(
    data: bytes, arrays: dict[str, Array], expected: list[Array], out_names: list[str]
) -> dict[str, float]:
    actual = run_onnx(data, arrays)
    return {name: max_abs_diff(e, actual[name], name) for name, e in zip(out_names, expected, strict=True)}
