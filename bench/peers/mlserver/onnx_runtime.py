"""A minimal MLServer custom runtime for ONNX models (MLServer 1.7 ships none for ONNX).

model-settings.json: ``"implementation": "onnx_runtime.OnnxModel"``,
``"parameters": {"uri": "/abs/model.onnx"}``.
Written the way MLServer's own runtimes (mlserver-sklearn) are: decode with NumpyCodec, predict in the
event loop, encode with NumpyCodec. With adaptive batching MLServer merges requests along the first dimension.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(uri, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {inp.name: NumpyCodec.decode_input(inp) for inp in payload.inputs}
        results = self._session.run(None, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(n, r) for n, r in zip(self._output_names, results, strict=True)
            ],
        )
