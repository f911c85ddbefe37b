"""A Ray Serve deployment around one ONNX Runtime session, on a local Ray (num_cpus=2).

The route takes the V2 JSON body at /v2/models/<file stem>/infer and answers V2-shaped JSON, but it is a plain
Ray Serve HTTP deployment (a Starlette request handler), not a V2 server: no metadata or health routes.

    python bench/peers/ray/app.py --model FILE --port P   (runs until SIGTERM)
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
V2_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


# max_ongoing_requests: Ray's default of 5 makes the replica reject the rest of 32 concurrent requests and the
# proxy retry them with backoff (seconds of latency); 64 lets it queue them like the other servers do.
@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class OnnxDeployment:
    def __init__(self, model_path: str) -> None:
        self.name = Path(model_path).stem
        self.session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    async def __call__(self, request: Request) -> Response:
        doc = orjson.loads(await request.body())
        feeds = {
            t["name"]: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
            for t in doc["inputs"]
        }
        results = self.session.run(None, feeds)
        outputs = [
            {"name": n, "datatype": V2_NAMES[r.dtype], "shape": list(r.shape), "data": r.ravel().tolist()}
            for n, r in zip(self.output_names, results, strict=True)
        ]
        return Response(
            orjson.dumps({"model_name": self.name, "outputs": outputs}), media_type="application/json"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    stop = threading.Event()  # handlers set after ray.init, which installs its own
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    quiet = {"enable_access_log": False}  # per-request access logs off, as for every server in the bench
    serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=quiet)
    name = args.model.stem
    app = OnnxDeployment.bind(str(args.model.resolve()))
    serve.run(app, name=name, route_prefix=f"/v2/models/{name}/infer", logging_config=quiet)
    print(f"ray serve listening on 127.0.0.1:{args.port}", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
