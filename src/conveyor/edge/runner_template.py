"""Run a Conveyor edge bundle: its ORT-format model, checked against the bundle's manifest, with onnxruntime.

Written into each bundle as ``run.py`` by ``conveyor export edge``. It needs only onnxruntime, numpy and the
standard library (no Conveyor), so it runs wherever those two install:

    python run.py --input x.npy                  # outputs as JSON on stdout
    python run.py --input request.json --output out.npz
    python run.py serve --port 8080              # a small Open Inference Protocol (V2) JSON endpoint
    python run.py verify                         # check every file against manifest.json, then exit

or from Python, with the bundle folder on ``sys.path`` (or the file imported by path):

    import run
    model = run.load()                           # verifies the files, then loads the model
    outputs = model.predict(x)                   # {output name: numpy array}

Every file the manifest lists is checked (size and SHA-256) before the model is loaded; a bundle that does not
match is refused (exit 5). Exit 2 means bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

MANIFEST = "manifest.json"
FORMAT = "conveyor.edge/v1"
EXIT_BAD_INPUT = 2
EXIT_CORRUPT = 5
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body ``serve`` reads; a larger one is answered 413 before it is read."""

# Open Inference Protocol datatypes <-> numpy (little-endian); BYTES travels as numpy objects (str). A copy of
# conveyor.protocol.datatypes' table, since this file runs without Conveyor; a unit test keeps the two equal.
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}


class BundleError(Exception):
    """The bundle's files do not match its manifest (corrupt, edited or incomplete)."""


class InputError(ValueError):
    """Inputs the model cannot take: an unknown or missing name, a datatype that does not convert."""


def verify(bundle: Path) -> dict[str, Any]:
    """The manifest of ``bundle`` after checking every file it lists; BundleError on any mismatch."""
    try:
        manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{bundle / MANIFEST}: cannot read the manifest: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{bundle / MANIFEST} is not a {FORMAT} manifest")
    for name in manifest["files"]:
        _read_verified(bundle, manifest, name)
    return manifest


def _read_verified(bundle: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of the bundle's file ``name``, after checking them against the manifest: the bytes hashed are
    the bytes used, so nothing can change in between."""
    entry = manifest["files"].get(name)
    if entry is None:
        raise BundleError(f"{name} is not listed in the manifest")
    path = bundle / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot read: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry["size"] or digest != entry["sha256"]:
        raise BundleError(
            f"{path} does not match the manifest: expected sha256 {entry['sha256']} ({entry['size']} bytes), "
            f"got {digest} ({len(data)} bytes)"
        )
    return data


class Model:
    """The bundle's model in an ONNX Runtime session on the CPU."""

    def __init__(self, bundle: Path, manifest: dict[str, Any], model_bytes: bytes, threads: int = 0) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.name = str(manifest["model"]["name"])
        self.version = str(manifest["model"]["version"])
        self.signature: dict[str, Any] = manifest["signature"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {t["name"]: t for t in self.signature["inputs"]}
        self._outputs = {t["name"]: t for t in self.signature["outputs"]}

    def predict(self, inputs: Mapping[str, Any] | Any) -> dict[str, np.ndarray]:
        """The model's outputs by name. ``inputs`` maps input names to arrays (or nested lists); a one-input
        model also takes the array itself. Values are cast to the declared datatype when that loses no kind
        (float64 to float32, not float to int)."""
        feeds = self.coerce(inputs)
        names = [t["name"] for t in self.signature["outputs"]]
        try:
            results = self.session.run(names, feeds)
        except Exception as e:  # ONNX Runtime's own errors: a shape or value the graph cannot take
            raise InputError(
                f"inference failed: {str(e).strip().splitlines()[0] if str(e) else e!r}"
            ) from None
        return dict(zip(names, results, strict=True))

    def coerce(self, inputs: Mapping[str, Any] | Any) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            if len(self._inputs) != 1:
                raise InputError(
                    f"this model has several inputs ({', '.join(self._inputs)}): give them by name"
                )
            inputs = {next(iter(self._inputs)): inputs}
        unknown = sorted(set(inputs) - set(self._inputs))
        missing = sorted(set(self._inputs) - set(inputs))
        if unknown or missing:
            raise InputError(
                f"inputs must be {', '.join(self._inputs)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        return {name: _cast(name, value, self._inputs[name]["datatype"]) for name, value in inputs.items()}


def _cast(name: str, value: Any, datatype: str) -> np.ndarray:
    want = V2_TO_NUMPY.get(datatype)
    if want is None:
        raise InputError(f"input {name!r}: unknown datatype {datatype!r}")
    if datatype == "BYTES":
        return np.asarray(value, dtype=object)
    arr = np.asarray(value)
    if arr.dtype != want:
        if not np.can_cast(arr.dtype, want, casting="same_kind"):
            raise InputError(f"input {name!r}: expected {datatype}, got numpy {arr.dtype}")
        arr = arr.astype(want)
    return arr


def load(bundle: str | Path | None = None, threads: int = 0) -> Model:
    """Verify the bundle (this file's folder by default) and load its model."""
    where = Path(bundle) if bundle is not None else Path(__file__).resolve().parent
    manifest = verify(where)
    return Model(where, manifest, _read_verified(where, manifest, manifest["model_file"]), threads)


# -- inputs and outputs as files ----------------------------------------------------------------------------


def read_inputs(path: Path, model: Model) -> dict[str, np.ndarray]:
    """Inputs from ``.npy`` (a one-input model), ``.npz`` (one array per input name) or ``.json``: a V2
    request body, an object of input name to nested list, or a nested list for a one-input model."""
    try:
        if path.suffix == ".npy":
            return model.coerce(np.load(path, allow_pickle=False))
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return model.coerce({k: z[k] for k in z.files})
        if path.suffix == ".json":
            return json_inputs(json.loads(path.read_text(encoding="utf-8")), model)
    except (OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: {e}") from None
    raise InputError(f"{path}: give a .npy, .npz or .json file")


def json_inputs(doc: Any, model: Model) -> dict[str, np.ndarray]:
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):  # a V2 request body
        out = {}
        for t in doc["inputs"]:
            if not isinstance(t, dict) or not {"name", "shape", "datatype", "data"} <= set(t):
                raise InputError("each of inputs needs name, shape, datatype and data")
            spec = model._inputs.get(t["name"])
            if spec is None:
                raise InputError(f"unknown input {t['name']!r}; inputs: {', '.join(model._inputs)}")
            if t["datatype"] != spec["datatype"]:
                raise InputError(f"input {t['name']!r}: expected {spec['datatype']}, got {t['datatype']}")
            arr = np.asarray(t["data"], dtype=V2_TO_NUMPY[spec["datatype"]])
            try:
                out[t["name"]] = arr.reshape([int(d) for d in t["shape"]])
            except (TypeError, ValueError) as e:
                raise InputError(
                    f"input {t['name']!r}: shape {t['shape']} does not fit its data: {e}"
                ) from None
        return model.coerce(out)
    return model.coerce(doc)


def response(model: Model, outputs: dict[str, np.ndarray], request_id: str | None = None) -> dict[str, Any]:
    """Outputs as a V2 response body."""
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = [
        {
            "name": name,
            "datatype": model._outputs[name]["datatype"],
            "shape": list(arr.shape),
            "data": _data(arr),
        }
        for name, arr in outputs.items()
    ]
    return body


def _data(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        # the shortest decimal that reads back as the same float32 (0.83580315, not 0.8358031511306763), as
        # the server writes it
        return [float(str(v)) for v in arr.ravel()]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in arr.ravel().tolist()]


def write_outputs(path: Path, model: Model, outputs: dict[str, np.ndarray]) -> None:
    if path.suffix == ".npz":
        np.savez(path, allow_pickle=False, **outputs)
    elif path.suffix == ".json":
        path.write_text(json.dumps(response(model, outputs)) + "\n", encoding="utf-8")
    else:
        raise InputError(f"{path}: write .npz or .json")


# -- a small V2 endpoint ------------------------------------------------------------------------------------


def make_server(model: Model, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering the V2 JSON inference routes for ``model`` (not yet serving)."""
    lock = threading.Lock()  # one run at a time: ONNX Runtime's own threads parallelise within it

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path in ("/v2/health/live", "/v2/health/ready"):
                self._send(200, {"live": True} if self.path.endswith("live") else {"ready": True})
            elif self.path in (
                f"/v2/models/{model.name}",
                f"/v2/models/{model.name}/versions/{model.version}",
            ):
                meta = {"name": model.name, "versions": [model.version], "platform": "onnxruntime_onnx"}
                self._send(200, {**meta, **model.signature})
            elif self.path.startswith("/v2/models/") and self.path.endswith("/ready"):
                ok = self.path.startswith(f"/v2/models/{model.name}/")
                self._send(200 if ok else 404, {"ready": ok} if ok else {"error": "unknown model"})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            infer = (
                f"/v2/models/{model.name}/infer",
                f"/v2/models/{model.name}/versions/{model.version}/infer",
            )
            if (
                self.path not in infer
            ):  # the body stays unread: close, or it would be read as the next request
                self._send(
                    404, {"error": f"no route {self.path}; this server answers {infer[0]}"}, close=True
                )
                return
            try:
                length = int(self.headers.get("Content-Length", "-1"))
            except ValueError:
                length = -1
            if length < 0:
                self._send(411, {"error": "a Content-Length header is required"}, close=True)
                return
            if length > MAX_BODY_BYTES:
                self._send(413, {"error": f"body of {length} bytes is over {MAX_BODY_BYTES}"}, close=True)
                return
            try:
                doc = json.loads(self.rfile.read(length))
                if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
                    raise InputError("the body must be a V2 request: an object with an inputs list")
                feeds = json_inputs(doc, model)
                with lock:
                    outputs = model.predict(feeds)
            except (InputError, ValueError) as e:
                self._send(400, {"error": str(e)})
                return
            rid = doc.get("id")
            self._send(200, response(model, outputs, rid if isinstance(rid, str) else None))

        def _send(self, status: int, body: dict[str, Any], close: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return ThreadingHTTPServer((host, port), Handler)


# -- the command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in ("predict", "serve", "verify") else "predict"
    parser = argparse.ArgumentParser(prog=f"run.py {command}", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="The bundle folder (default: this file's).")
    parser.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)."
    )
    if command == "predict":
        parser.add_argument("--input", type=Path, required=True, help=".npy, .npz or .json (a V2 request).")
        parser.add_argument("--output", type=Path, help="Write .npz or .json here (default: JSON on stdout).")
    elif command == "serve":
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8080)
    opts = parser.parse_args(args)
    try:
        model = load(opts.bundle, opts.threads)
        if command == "verify":
            files = ", ".join(model.manifest["files"])
            print(f"{model.name}:{model.version}: every file matches the manifest ({files})")
        elif command == "serve":
            server = make_server(model, opts.host, opts.port)
            host, port = server.server_address[:2]
            url = f"http://{host!s}:{port}/v2/models/{model.name}/infer"
            print(f"serving {model.name}:{model.version} at {url}", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.server_close()
        else:
            outputs = model.predict(read_inputs(opts.input, model))
            if opts.output is None:
                print(json.dumps(response(model, outputs)))
            else:
                write_outputs(opts.output, model, outputs)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CORRUPT
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
