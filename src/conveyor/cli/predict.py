"""``conveyor predict``: send inputs to a served model (``--url``) or run it in-process from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from conveyor.cli.client import CaOpt, ca_file
from conveyor.cli.output import console, err_console, print_json, shape_str, titled_table
from conveyor.errors import InvalidInput
from conveyor.settings import get_settings

if TYPE_CHECKING:
    import numpy as np


def predict(
    ref: Annotated[
        str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS (NAME or NAME:VERSION with --url).")
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="Inputs: inline JSON or a file (.json, .npy, .npz, .csv). JSON is a V2 request "
            '({"inputs": [...]}), a mapping {"input_name": [[...]]}, or a bare list for a one-input model.',
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            help="Server to send to, e.g. http://127.0.0.1:8080 (default: $CONVEYOR_GATEWAY_URL; "
            "unset: run in-process)."
        ),
    ] = None,
    output: Annotated[list[str], typer.Option("--output", "-o", help="Only return these outputs.")] = [],  # noqa: B006
    binary: Annotated[
        bool, typer.Option("--binary", help="Use the binary tensor extension over HTTP.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="HTTP timeout in seconds.", min=0.001, max=86_400)] = 30.0,
    ca: CaOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the V2 response as JSON, with answered_by: which version answered, and where.",
        ),
    ] = False,
) -> None:
    """Run a prediction and print the outputs, and on stderr which model version answered and from where.

    Without --url (or $CONVEYOR_GATEWAY_URL) the model runs in this process from the registry, whatever is
    deployed: NAME is the version the production alias names (else the latest). When a control plane answers
    at $CONVEYOR_URL and its deployment named NAME serves another version, a note says so and how to ask it.
    """
    settings = get_settings()
    url = url or settings.gateway_url
    payload = _read_data(data)
    deployment = None
    if url:
        from conveyor.cli.remote import remote_predict

        response = remote_predict(
            url,
            ref,
            payload,
            outputs=output or None,
            binary=binary,
            timeout=timeout,
            ca_file=ca_file(settings.tls_ca_file),
        )
        answered = answered_by(response, url=url)
    else:
        response = _local_predict(ref, payload, outputs=output or None)
        deployment = None if ":" in ref else deployed(settings.url, str(response["model_name"]))
        answered = answered_by(response, home=str(settings.home), deployment=deployment)
    if as_json:
        print_json({**response, "answered_by": answered})
    else:
        _print_response(response)
        err_console.print(f"answered by {_source_line(answered)}", highlight=False, soft_wrap=True)
    if note := _deployment_note(answered, deployment["gateway"] if deployment else None):
        err_console.print(note, highlight=False, soft_wrap=True)


def _read_data(data: str) -> Any:
    """Inline JSON or a file: returns parsed JSON, an ndarray, or a dict of ndarrays."""
    text = data.strip()
    if text[:1] in ("{", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"--data is not valid JSON: {exc}") from None
    if not text:
        raise InvalidInput("--data is empty: give a JSON object or list, or a file (.json, .npy, .npz, .csv)")
    path = Path(data)
    if not path.exists():
        raise InvalidInput(
            f"--data {data!r} is neither a JSON object or list nor an existing file (.json, .npy, .npz, .csv)"
        )
    if path.suffix.lower() == ".json":
        try:
            return orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"{path} is not valid JSON: {exc}") from None
    from conveyor.formats import load_sample

    return load_sample(path)


def to_named_arrays(payload: Any, signature_inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Normalise the accepted --data forms into name -> array using the model's declared inputs."""
    import numpy as np  # here, not at the top: every `conveyor` command imports this module

    from conveyor.protocol.datatypes import numpy_dtype

    specs = {t["name"]: t for t in signature_inputs}
    if isinstance(payload, dict) and "inputs" in payload and isinstance(payload["inputs"], list):
        arrays: dict[str, Any] = {}
        for item in payload["inputs"]:
            if not isinstance(item, dict) or "name" not in item or "data" not in item:
                raise InvalidInput('each entry of "inputs" needs "name" and "data"')
            arr = np.asarray(item["data"])
            if "shape" in item:
                try:
                    arr = arr.reshape(item["shape"])
                except ValueError:
                    raise InvalidInput(
                        f"input {item['name']!r}: data does not fit shape {item['shape']}"
                    ) from None
            arrays[item["name"]] = arr
        payload = arrays
    if not isinstance(payload, dict):
        if len(specs) != 1:
            raise InvalidInput(f"the model has inputs {', '.join(specs)}; pass a mapping of name -> data")
        payload = {next(iter(specs)): payload}
    out: dict[str, np.ndarray] = {}
    for name, value in payload.items():
        spec = specs.get(name)
        if spec is None:
            raise InvalidInput(f"unknown input {name!r}; the model's inputs are {', '.join(specs)}")
        if spec["datatype"] == "BYTES":
            out[name] = np.asarray(value, dtype=np.object_)
            continue
        try:
            out[name] = np.asarray(value, dtype=numpy_dtype(spec["datatype"]))
        except (ValueError, TypeError):
            raise InvalidInput(f"input {name!r}: data is not convertible to {spec['datatype']}") from None
        want = spec["shape"]
        if out[name].ndim == len(want) - 1 and want and want[0] == -1:
            out[name] = out[name][None, ...]  # one row given for a batched input
    return out


def _local_predict(ref: str, payload: Any, outputs: list[str] | None) -> dict[str, Any]:
    import conveyor
    from conveyor.protocol.datatypes import v2_datatype

    model = conveyor.load(ref)
    sig_inputs = [t.to_dict() for t in model.signature.inputs]
    result = model.predict(to_named_arrays(payload, sig_inputs), outputs)
    return {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [
            {"name": k, "datatype": v2_datatype(v.dtype), "shape": list(v.shape), "data": v.ravel().tolist()}
            for k, v in result.items()
        ],
    }


def answered_by(
    response: dict[str, Any],
    *,
    url: str | None = None,
    home: str | None = None,
    deployment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Which version answered (the V2 answer's model_name:model_version) and where: a server at ``url``, or
    this process from the registry at ``home`` (with what the deployment of that name serves, if known)."""
    version = response.get("model_version")
    model = f"{response.get('model_name')}:{version}" if version else str(response.get("model_name"))
    return {
        "model": model,
        "source": "server" if url else "in-process",
        "home": home,
        "url": url,
        "deployment": {"name": deployment["name"], "model": deployment["model"]} if deployment else None,
    }


def deployed(api_url: str, name: str) -> dict[str, Any] | None:
    """The deployment ``name`` of the control plane at ``api_url``, with ``gateway`` (its URL), if one answers
    within a second; None otherwise: the note it feeds is a courtesy, never a reason to fail or to wait."""
    from conveyor.cli.client import ApiClient
    from conveyor.errors import ConveyorError

    try:
        with ApiClient(api_url, timeout=1.0, ca_file=ca_file(get_settings().tls_ca_file)) as api:
            found = api.get("/endpoints")
    except ConveyorError:
        return None
    endpoints = [e for e in found.get("endpoints") or [] if isinstance(e, dict)]
    endpoint = next((e for e in endpoints if e.get("name") == name), None)
    if endpoint is None or not isinstance(endpoint.get("model"), str):
        return None
    gateways = [g for g in found.get("gateways") or [] if isinstance(g, dict)]
    gateway = next((g["url"] for g in gateways if isinstance(g.get("url"), str)), None)
    return {"name": name, "model": endpoint["model"], "gateway": gateway}


def _source_line(answered: dict[str, Any]) -> str:
    if answered["source"] == "server":
        return f"{answered['model']} (server {answered['url']})"
    return f"{answered['model']} (in-process from the registry at {answered['home']}; no server asked)"


def _deployment_note(answered: dict[str, Any], gateway: str | None = None) -> str | None:
    deployment = answered["deployment"]
    if deployment is None or deployment["model"] == answered["model"]:
        return None
    ask = f"--url {gateway}" if gateway else "--url GATEWAY_URL"
    return (
        f"note: deployment/{deployment['name']} serves {deployment['model']}, not {answered['model']}; "
        f"ask it with {ask} (or set CONVEYOR_GATEWAY_URL)"
    )


def _print_response(response: dict[str, Any]) -> None:
    import numpy as np

    title = f"{response.get('model_name')}:{response.get('model_version') or '-'}"
    rows = []
    for out in response.get("outputs", []):
        values = np.asarray(out["data"]).reshape(out["shape"]) if out["datatype"] != "BYTES" else out["data"]
        text = (
            np.array2string(np.asarray(values), threshold=40, precision=4)
            if out["datatype"] != "BYTES"
            else str(values)[:400]
        )
        rows.append([out["name"], out["datatype"], shape_str(out["shape"]), text])
    table = titled_table(title, ("output", "datatype", "shape", "values"), rows)
    console.print(table)
