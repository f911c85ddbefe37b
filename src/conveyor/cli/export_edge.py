"""``conveyor export edge REF -o DIR``: a registered version as an edge bundle (ORT-format model, signature,
checksum manifest, a runner needing only onnxruntime and numpy)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import conveyor
from conveyor.cli.output import console, human_size, print_json
from conveyor.settings import get_settings

# conveyor.edge (ONNX Runtime's conversion tool, the quantizer) loads inside the command.


def edge(
    ref: Annotated[str, typer.Argument(help="The version to export: NAME:VERSION, NAME@ALIAS or NAME.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="The bundle's folder: new, empty, or an earlier bundle with --force."
        ),
    ],
    quantize: Annotated[
        str | None,
        typer.Option(
            help="dynamic (int8 weights) or fp16, applied on the way (not gated: to compare it with the "
            "parent first, run `conveyor optimize` and export the version it registers).",
            case_sensitive=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier bundle in the folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON for scripts.")] = False,
) -> None:
    """Write REF as an edge bundle: the model in ONNX Runtime's ORT format (optionally quantized), its
    signature, the operators a minimal ONNX Runtime build needs, a manifest with every file's SHA-256, and
    run.py, which verifies the files and runs the model with only onnxruntime and numpy installed
    (`python run.py --input x.npy`, or `python run.py serve --port 8080` for a V2 endpoint)."""
    from conveyor.edge import build

    settings = get_settings()
    with conveyor.open_registry(settings) as registry:
        version = registry.resolve(ref)
        data = registry.artifact_bytes(version)
    bundle = build(version, data, output, quantize=quantize.lower() if quantize else None, force=force)
    if as_json:
        print_json(bundle.to_dict())
        return
    files = bundle.manifest["files"]
    how = f", {bundle.manifest['quantization']['method']}" if bundle.manifest["quantization"] else ""
    console.print(
        f"[green]Wrote[/] edge bundle of [bold]{version.ref}[/]{how} to {bundle.path}: "
        + ", ".join(f"{name} {human_size(f['size'])}" for name, f in files.items())
        + f", manifest.json (onnxruntime {bundle.manifest['onnxruntime_version']})",
        highlight=False,
    )
    console.print(f"run it: python {bundle.path / 'run.py'} --input x.npy", highlight=False)
