"""The parts of a fusion: registered versions read as ONNX graphs and brought to one IR version and one
opset per domain, so that their nodes can live in one graph."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import first_line
from conveyor.formats.signature import Signature, TensorSpec
from conveyor.registry import Registry, VersionInfo

MIN_OPSET = 13
"""The default-domain opset the combiners are written for (Equal on floats, Min on integers, Where); parts
exported for an older one are converted up to it."""


@dataclass(frozen=True)
class Part:
    """One registered version taking part in a fusion."""

    version: VersionInfo
    onnx_bytes: bytes  # as registered: what serving it on its own runs
    model: onnx.ModelProto  # harmonized with the other parts
    signature: Signature

    @property
    def ref(self) -> str:
        return self.version.ref


def load_parts(registry: Registry, refs: list[str]) -> list[Part]:
    """The versions ``refs`` name, in order, with their graphs brought to one IR version and opsets."""
    if len(refs) < 2:
        raise InvalidInput(f"a fusion needs at least two parts, got {len(refs)}")
    versions = [registry.resolve(ref) for ref in refs]
    seen: set[str] = set()
    for v in versions:
        if v.ref in seen:
            raise InvalidInput(f"{v.ref} is named twice: give each part once (--weights can count one more)")
        seen.add(v.ref)
    data = [registry.artifact_bytes(v) for v in versions]
    models = harmonize([onnx.load_from_string(d) for d in data], [v.ref for v in versions])
    return [
        Part(v, d, m, Signature.from_dict(v.signature))
        for v, d, m in zip(versions, data, models, strict=True)
    ]


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    """Domain -> opset version imported (the highest, when a converter listed a domain twice)."""
    out: dict[str, int] = {}
    for o in model.opset_import:
        domain = "" if o.domain == "ai.onnx" else o.domain
        out[domain] = max(out.get(domain, 0), o.version)
    return out


def harmonize(models: list[onnx.ModelProto], refs: list[str]) -> list[onnx.ModelProto]:
    """Every model at the same default-domain opset (the highest among them, at least MIN_OPSET: ONNX's
    version converter rewrites what changed between them), the highest opset of every other domain and the
    highest IR version; a part that cannot be converted is refused, naming it."""
    per_model = [opsets(m) for m in models]
    target = max([MIN_OPSET, *(o.get("", 0) for o in per_model)])
    union: dict[str, int] = {}
    for o in per_model:
        for domain, version in o.items():
            union[domain] = max(union.get(domain, 0), version)
    union[""] = target
    ir_version = max(m.ir_version for m in models)
    out = []
    for model, found, ref in zip(models, per_model, refs, strict=True):
        if found.get("", target) != target:
            from onnx import version_converter

            try:
                model = version_converter.convert_version(model, target)
            except Exception as e:  # the converter raises RuntimeError, ValueError... for what it cannot do
                raise ConversionError(
                    f"{ref} is opset {found['']} and cannot be converted to opset {target} "
                    f"(the highest among the parts): {first_line(e)}"
                ) from e
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        del copy.opset_import[:]
        for domain, version in sorted(union.items()):
            copy.opset_import.add(domain=domain, version=version)
        copy.ir_version = ir_version
        out.append(copy)
    return out


def shapes_fit(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same rank, and every dimension the same where both are fixed (-1: any)."""
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b, strict=True))


def describe(t: TensorSpec) -> str:
    """``input FP32 [-1, 4]``"""
    return f"{t.name} {t.datatype} {list(t.shape)}"


def tensors(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(describe(t) for t in specs) or "nothing"
