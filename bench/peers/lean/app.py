"""The "lean Python" reference: Starlette + uvicorn (uvloop, httptools) + orjson + ONNX Runtime, one process.

What a careful engineer writes by hand for one model and the V2 JSON body: no validation beyond what numpy
does, inference in Starlette's thread pool so the event loop keeps accepting.

    python bench/peers/lean/app.py --model FILE --port P   (served as /v2/models/<file stem>/infer)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
V2_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def build_app(model_path: Path) -> Starlette:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]

    async def infer(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        feeds = {
            t["name"]: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
            for t in doc["inputs"]
        }
        results = await run_in_threadpool(session.run, None, feeds)
        outputs = [
            {"name": n, "datatype": V2_NAMES[r.dtype], "shape": list(r.shape), "data": r.ravel().tolist()}
            for n, r in zip(output_names, results, strict=True)
        ]
        return Response(
            orjson.dumps({"model_name": model_path.stem, "outputs": outputs}), media_type="application/json"
        )

    async def ready(request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route(f"/v2/models/{model_path.stem}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(
        build_app(args.model),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
