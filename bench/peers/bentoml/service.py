"""A BentoML 1.4 service around one ONNX Runtime session (BentoML's own JSON API, not V2).

POST /infer with ``{"x": <nested list, batch first>}``; answers ``{output name: nested list}``.
The model file comes from BENCH_MODEL. Started with ``bentoml serve service:OnnxService``.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import onnxruntime as ort


# Per-request access logs off, as for every server in the bench.
@bentoml.service(workers=1, traffic={"timeout": 30}, logging={"access": {"enabled": False}})
class OnnxService:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @bentoml.api
    def infer(self, x: np.ndarray) -> dict[str, list]:  # type: ignore[type-arg]
        results = self.session.run(None, {self.input_name: x.astype(np.float32, copy=False)})
        return {n: r.tolist() for n, r in zip(self.output_names, results, strict=True)}
