"""torch.export programs → a module the TorchScript exporter can trace, with the program's inputs and batch.

``program.module()`` runs the exported graph (its input guards included), so the ONNX export traces exactly
what was exported and parity compares against the program itself. Its batch dimension is dynamic when the
program's is (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``), fixed otherwise.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.samples import Array, Sample

DYNAMIC_HINT = 'export with dynamic_shapes={"x": {0: torch.export.Dim("batch")}} to serve any batch size'


def program_module(program: Any, sample: Sample | None) -> tuple[Any, Sample | None, bool]:
    """(a traceable module, the sample keyed by input name, whether dim 0 is dynamic)."""
    from conveyor.formats.torch import torch_module

    torch = torch_module()
    shapes = _input_shapes(torch, program)
    names = list(shapes)
    if sample is None:
        sample = _example_sample(program, names)
    elif not isinstance(sample, dict):
        if len(names) != 1:
            raise InvalidInput(
                f"the program has inputs {names}; give the sample as a mapping of input name to array"
            )
        sample = {names[0]: sample}
    elif set(sample) == set(names):
        sample = {name: sample[name] for name in names}  # by name, in forward()'s order
    dynamic = all(not isinstance(shape[0], int) for shape in shapes.values() if shape)
    if sample is not None:
        _check_static_dims(shapes, sample)
    inner = program.module()
    module = _program_class(torch)(inner)
    batch = "dynamic batch" if dynamic else "fixed batch"
    module.program_description = f"torch.export program ({', '.join(names)}; {batch})"
    return module, sample, dynamic


def _input_shapes(torch: Any, program: Any) -> dict[str, tuple[Any, ...]]:
    """The user inputs in order with their exported shapes (a symbol where a dimension is dynamic)."""
    values = {node.name: node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder"}
    shapes: dict[str, tuple[Any, ...]] = {}
    for name in program.graph_signature.user_inputs:
        val = values.get(name)
        if not isinstance(val, torch.Tensor):
            raise ConversionError(
                f"the program's input {name!r} is a {type(val).__name__}, not a tensor; only tensor inputs "
                "can be served: export a wrapper whose forward takes tensors only"
            )
        shapes[name] = tuple(val.shape)
    if not shapes:
        raise ConversionError("the program takes no tensor input; nothing could be sent to it")
    return shapes


def _example_sample(program: Any, names: list[str]) -> Sample | None:
    """The example inputs saved with the program, as the parity sample (torch.export.save keeps them)."""
    example = getattr(program, "example_inputs", None)
    if not example:
        return None
    args, kwargs = example
    tensors = [*args, *kwargs.values()]
    if len(tensors) != len(names):
        return None
    return {name: t.detach().cpu().numpy() for name, t in zip(names, tensors, strict=True)}


def _check_static_dims(shapes: dict[str, tuple[Any, ...]], sample: Sample) -> None:
    arrays: dict[str, Array] = sample if isinstance(sample, dict) else {}
    for (name, shape), array in zip(shapes.items(), arrays.values(), strict=False):
        fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int)]
        wrong = len(shape) != array.ndim or any(array.shape[i] != d for i, d in fixed)
        if wrong:
            want = [d if isinstance(d, int) else "*" for d in shape]
            hint = f"; {DYNAMIC_HINT}" if shape and isinstance(shape[0], int) else ""
            raise InvalidInput(
                f"the program was exported for input {name!r} of shape {want}; the sample has "
                f"{list(array.shape)}{hint}"
            )


def _program_class(torch: Any) -> Any:
    class Program(torch.nn.Module):  # type: ignore[misc,name-defined]
        """Holds ``program.module()``, which refuses train()/eval(): it is always in inference mode."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

        def train(self, mode: bool = True) -> Any:
            self.training = mode  # not passed down: the exported graph has no mode to switch
            return self

    return Program
