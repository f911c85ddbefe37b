"""``conveyor fuse``: merge registered versions into one graph (an ensemble or a pipeline) and register it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import conveyor
from conveyor.cli.output import console, print_json
from conveyor.errors import InvalidInput
from conveyor.settings import get_settings

# conveyor.fuse (onnx.compose, ONNX Runtime) loads inside the command, as conveyor.optimize does.


def fuse(
    name: Annotated[str, typer.Argument(help="The model to register the fused graph as (its next version).")],
    refs: Annotated[
        list[str], typer.Argument(help="The parts, in order: NAME:VERSION, NAME@ALIAS or NAME, two or more.")
    ],
    ensemble: Annotated[
        str | None,
        typer.Option(
            help="mean (outputs averaged; a classifier's label: the class of the highest averaged "
            "probability), weighted (the same, by --weights normalized) or vote (the label: the majority "
            "of the parts', ties to the smallest; probabilities averaged).",
            case_sensitive=False,
        ),
    ] = None,
    pipeline: Annotated[
        bool,
        typer.Option(
            "--pipeline",
            help="Each part's outputs feed the next part's inputs (by name, else by position).",
        ),
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option(help="One weight per part, comma-separated (2,1): --ensemble weighted, or vote."),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            help="Rows (.npy, .npz, .csv) the fused graph is checked on against the parts (default: "
            "rows drawn from a part's reference statistics); also its drift reference."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")] = False,
) -> None:
    """Fuse REFS into one ONNX graph — an ensemble (--ensemble mean|weighted|vote) or a pipeline
    (--pipeline) — check that it answers what the parts run separately and combined in numpy answer (to
    1e-5; labels exactly), and register it as the next version of NAME with the parts as its lineage.
    Refused, with nothing registered, when the parts do not fit together (exit 2) or the check fails
    (exit 6)."""
    from conveyor.fuse import FuseOptions
    from conveyor.fuse import fuse as run_fuse

    settings = get_settings()
    options = FuseOptions(
        ensemble=ensemble.lower() if ensemble else None,
        pipeline=pipeline,
        weights=_weights(weights),
        sample=sample,
        intra_op_threads=settings.intra_op_threads,
    )
    options.check()  # bad options fail here, before the registry opens
    with conveyor.open_registry(settings) as registry:
        result = run_fuse(registry, name, refs, options)
    v = result.version
    assert v is not None  # fuse raises instead of registering nothing
    if as_json:
        print_json(result.to_dict())
        return
    parity = result.parity
    checked = f"max |diff| {parity['max_abs_diff']:.3g}" + "".join(
        f", {label} agrees {share:.0%}" for label, share in parity["agreement"].items()
    )
    console.print(f"[green]Registered[/] [bold]{v.ref}[/] ({result.what})")
    console.print(
        f"checked against {parity['against']} on {parity['rows']} rows ({parity['source']}): "
        f"{checked} (tolerance {parity['tolerance']:g})"
    )


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise InvalidInput(f"--weights must be numbers separated by commas (2,1), not {text!r}") from None
