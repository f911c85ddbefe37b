"""A model's signature: input and output tensors (name, V2 datatype, shape with -1 for dynamic dims)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str  # V2 datatype name: FP32, INT64, BYTES, ...
    shape: tuple[int, ...]  # -1 marks a dynamic dimension

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(name=str(d["name"]), datatype=str(d["datatype"]), shape=tuple(int(x) for x in d["shape"]))


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in d.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(t) for t in d.get("outputs", [])),
        )

    @classmethod
    def from_onnx_bytes(cls, data: bytes) -> Signature:
        """Read the signature of an ONNX model with ONNX Runtime (symbolic dims become -1)."""
        import onnxruntime as ort

        from conveyor.protocol.datatypes import ort_to_v2

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])

        def spec(arg: Any) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
            return TensorSpec(arg.name, ort_to_v2(arg.type), shape)

        return cls(
            inputs=tuple(spec(a) for a in sess.get_inputs()),
            outputs=tuple(spec(a) for a in sess.get_outputs()),
        )
