"""The "lean Python" reference: Starlette + uvicorn (uvloop, httptools) + orjson + ONNX Runtime, one process.

What a careful engineer writes by hand for one small CPU model and the V2 body: no validation beyond what
numpy does, ``session.run`` called inline in the async route (a thread handoff costs more than a small
model's inference), one intra-op thread, inter-op 1, sequential execution and thread spinning off, so the
core it computes on is not spent spinning while the event loop parses the next request.

    python bench/peers/lean/app.py --model FILE --port P [--binary | --threadpool]

Served as /v2/models/<file stem>/infer. ``--binary`` takes the V2 binary tensor data extension (the JSON
header, then raw tensor bytes; ``Inference-Header-Content-Length`` says where they start) and answers JSON, as
the bench's binary Conveyor rows are asked. ``--threadpool`` is the earlier, weaker reference, kept as a
labelled extra row: inference in Starlette's thread pool, ONNX Runtime's default session options (spinning,
one intra-op thread per core).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
Feeds = dict[str, np.ndarray]


def strong_options() -> ort.SessionOptions:
    """One core for compute, no spinning: what a small model served from an event loop wants."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def json_feeds(body: bytes, header_length: str | None) -> Feeds:
    doc = orjson.loads(body)
    return {
        t["name"]: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
        for t in doc["inputs"]
    }


def binary_feeds(body: bytes, header_length: str | None) -> Feeds:
    """The V2 binary data extension: tensors laid out after the JSON header in the order of ``inputs``."""
    if header_length is None:
        return json_feeds(body, None)
    offset = int(header_length)
    doc = orjson.loads(body[:offset])
    feeds = {}
    for t in doc["inputs"]:
        size = t["parameters"]["binary_data_size"]
        dtype = DTYPES[t["datatype"]]
        count = size // np.dtype(dtype).itemsize
        feeds[t["name"]] = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(t["shape"])
        offset += size
    return feeds


def build_app(model_path: Path, binary: bool = False, threadpool: bool = False) -> Starlette:
    options = ort.SessionOptions() if threadpool else strong_options()
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    decode = binary_feeds if binary else json_feeds

    async def infer(request: Request) -> Response:
        feeds = decode(await request.body(), request.headers.get("inference-header-content-length"))
        if threadpool:
            results: list[Any] = await run_in_threadpool(session.run, output_names, feeds)
        else:  # inline: the loop waits for the inference, which for these models costs less than a handoff
            results = session.run(output_names, feeds)
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    variant = ap.add_mutually_exclusive_group()
    variant.add_argument("--binary", action="store_true", help="V2 binary tensor requests (answers in JSON)")
    variant.add_argument("--threadpool", action="store_true", help="the earlier, weaker reference")
    args = ap.parse_args()
    uvicorn.run(
        build_app(args.model, binary=args.binary, threadpool=args.threadpool),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
