"""Open Inference Protocol request and response values: plain slots dataclasses, no validation here.

The codec (``conveyor.protocol.codec``) builds and checks them; tensors are numpy arrays, never Python lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


@dataclass(slots=True)
class Tensor:
    """A named tensor on the wire: a request's input or a response's output (shaped alike)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]
    parameters: Parameters = field(default_factory=dict)


RequestInput = Tensor
ResponseOutput = Tensor


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # the ``binary_data`` parameter; None defers to ``binary_data_output``
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    inputs: list[RequestInput]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None

    def output_names(self) -> list[str] | None:
        return None if self.outputs is None else [o.name for o in self.outputs]


@dataclass(slots=True)
class InferResponse:
    model_name: str
    outputs: list[ResponseOutput]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)

    def as_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        return {o.name: o.data for o in self.outputs}
