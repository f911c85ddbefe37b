"""Talking to a running Conveyor (or any V2) server over HTTP for ``conveyor predict --url``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from conveyor.cli.client import check_url, error_for, error_message, verify_for
from conveyor.errors import ConveyorError, InvalidInput, Unavailable


def _model_path(ref: str) -> str:
    if "@" in ref:
        raise InvalidInput("aliases are resolved by the registry; with --url use NAME or NAME:VERSION")
    name, sep, version = ref.partition(":")
    if sep and not version.isdigit():
        raise InvalidInput(f"{ref!r} is not NAME or NAME:VERSION")
    return f"/v2/models/{name}" + (f"/versions/{version}" if sep else "")


def _raise_for(resp: httpx.Response, url: str) -> None:
    if resp.status_code < 400:
        return
    raise error_for(resp.status_code, f"{url} answered {resp.status_code}: {error_message(resp)}")


def _inputs_of(meta: httpx.Response, url: str) -> list[dict[str, Any]]:
    """The ``inputs`` of V2 model metadata; Unavailable when the answer is not that."""
    try:
        doc = meta.json()
    except ValueError:
        doc = None
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and "name" in i for i in inputs):
        raise Unavailable(f"{url} is not a V2 inference server (its model metadata has no inputs)")
    return inputs


def remote_predict(
    url: str,
    ref: str,
    payload: Any,
    *,
    outputs: list[str] | None,
    binary: bool,
    timeout: float,
    ca_file: Path | None = None,
) -> dict[str, Any]:
    """Fetch the model's metadata (for input names and datatypes), send the request, decode the answer. An
    https server's certificate is verified against ``ca_file``, else the system's trust store."""
    from conveyor.cli.predict import to_named_arrays
    from conveyor.protocol.codec import decode_infer_response, encode_infer_request

    base = check_url(url).rstrip("/") + _model_path(ref)
    try:
        from conveyor.security.credentials import auth_headers
        from conveyor.settings import get_settings

        auth = auth_headers(get_settings(), url)
        with httpx.Client(timeout=timeout, verify=verify_for(url, ca_file), headers=auth) as client:
            meta = client.get(base)
            _raise_for(meta, base)
            arrays = to_named_arrays(payload, _inputs_of(meta, base))
            body, header_len = encode_infer_request(
                arrays, outputs=outputs, binary=binary, binary_outputs=binary
            )
            headers = {"Content-Type": "application/json"}
            if header_len is not None:
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(header_len),
                }
            resp = client.post(base + "/infer", content=body, headers=headers)
            _raise_for(resp, base + "/infer")
    except httpx.HTTPError as exc:
        from conveyor.security.tls import tls_problem

        raise Unavailable(tls_problem(url, exc) or f"cannot reach {url}: {exc}") from None
    hl = resp.headers.get("Inference-Header-Content-Length")
    try:
        decoded = decode_infer_response(resp.content, int(hl) if hl and hl.isdigit() else None)
    except ConveyorError as exc:
        raise Unavailable(f"{base}/infer is not a V2 inference answer: {exc.message}") from None
    return {
        "model_name": decoded.model_name,
        "model_version": decoded.model_version,
        "id": decoded.id,
        "outputs": [
            {
                "name": o.name,
                "datatype": o.datatype,
                "shape": list(o.shape),
                "data": [
                    x.decode(errors="replace") if isinstance(x, bytes) else x for x in o.data.ravel().tolist()
                ],
            }
            for o in decoded.outputs
        ],
    }
