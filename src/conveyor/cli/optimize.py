"""``conveyor optimize``: quantize or graph-optimize a version, gate it against its parent, register it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import conveyor
from conveyor.cli.output import console, err_console, human_size, print_json, titled_table
from conveyor.errors import ConversionError
from conveyor.settings import get_settings

if TYPE_CHECKING:
    from conveyor.optimize import OptimizeResult

# conveyor.optimize (ONNX Runtime's quantization tools, scikit-learn's metrics) loads inside the command:
# every other `conveyor` command would pay for it otherwise.

DataOpt = Path | None


def optimize(
    ref: Annotated[str, typer.Argument(help="The version to optimize: NAME:VERSION, NAME@ALIAS or NAME.")],
    quantize: Annotated[
        str | None,
        typer.Option(
            help="dynamic (int8 weights), static (int8 QDQ, calibrated) or fp16 (float16 inside, "
            "float32 in and out).",
            case_sensitive=False,
        ),
    ] = None,
    calibration: Annotated[
        DataOpt,
        typer.Option(
            help="Rows (.npy, .npz, .csv) static quantization calibrates on (default: rows drawn from "
            "the version's reference statistics)."
        ),
    ] = None,
    data: Annotated[
        DataOpt,
        typer.Option(
            help="Rows drift, accuracy and latency are measured on (default: the calibration rows)."
        ),
    ] = None,
    labels: Annotated[
        DataOpt, typer.Option(help="The true answer for each row of --data (or --calibration): .npy or .csv.")
    ] = None,
    graph_opt: Annotated[
        str | None,
        typer.Option(
            help="ONNX Runtime's offline graph optimization: basic, extended or all (all: for this "
            "machine's CPU).",
            case_sensitive=False,
        ),
    ] = None,
    max_drift: Annotated[
        float | None,
        typer.Option(help="Refuse when an output differs from the parent's by more than this (max |diff|)."),
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            help="Refuse when accuracy falls by more than this (0.01: one point), or RMSE grows by more "
            "(a regressor). Needs --labels."
        ),
    ] = None,
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback",
            help="Try static, then dynamic, then none (from --quantize on); keep the smallest that passes.",
        ),
    ] = False,
    measure_seconds: Annotated[
        float, typer.Option(help="Seconds to time each model at each batch size.", min=0.01, max=600)
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON for scripts.")] = False,
) -> None:
    """Quantize and/or graph-optimize REF, measure the result against it (size, latency and throughput at
    batch 1 and 32, output drift, accuracy or RMSE with --labels) and register it as the next version of the
    same model, with REF as its parent. Refused, with the numbers and nothing registered (exit 6), when a
    bound is broken."""
    from conveyor.optimize import OptimizeOptions
    from conveyor.optimize import optimize as run_optimize

    settings = get_settings()
    options = OptimizeOptions(
        quantize=quantize.lower() if quantize else None,
        graph_opt=graph_opt.lower() if graph_opt else None,
        calibration=calibration,
        data=data,
        labels=labels,
        max_drift=max_drift,
        max_accuracy_drop=max_accuracy_drop,
        fallback=fallback,
        measure_seconds=measure_seconds,
        intra_op_threads=settings.intra_op_threads,
    )
    options.chain()  # bad options fail here, before the registry opens
    with conveyor.open_registry(settings) as registry:
        with _Bar() as bar:
            result = run_optimize(registry, ref, options, bar)
        v = result.version
        same = [] if v is None else [x.ref for x in registry.list_versions(v.name) if x.sha256 == v.sha256]
    earlier = [r for r in same if v is None or r != v.ref]
    if as_json:
        print_json({**result.to_dict(), "already_registered_as": earlier})
    else:
        console.print(_table(result))
        if v is not None:
            console.print(
                f"[green]Registered[/] [bold]{v.ref}[/] ({v.description}): "
                f"{human_size(result.parent.size_bytes)} → {human_size(v.size_bytes)}"
            )
        if earlier:  # the tools are deterministic: the same method on the same parent gives the same bytes
            console.print(
                f"already registered as {', '.join(earlier)}: same sha256, the artifact is stored once"
            )
    if result.refusal is not None:
        raise ConversionError(result.refusal)


class _Bar:
    """A progress bar on stderr while candidates are built and timed (none when stderr is no terminal)."""

    def __init__(self) -> None:
        columns = (
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self._progress = Progress(
            *columns, console=err_console, transient=True, disable=not err_console.is_terminal
        )
        self._task = self._progress.add_task("measuring", total=None)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total, completed=0)

    def advance(self, what: str) -> None:
        self._progress.update(self._task, advance=1, description=what)


def _table(result: OptimizeResult) -> Any:
    """Parent beside every candidate tried: size, latency, throughput, drift, quality and the verdict."""
    parent = result.parent_numbers
    columns = [
        (f"{result.parent.ref} (parent)", parent, None),
        *((c.method, c.to_dict(), c) for c in result.candidates),
    ]
    batches = sorted({b for _, n, _ in columns for b in n.get("timing", {})}, key=int)
    rows: list[list[str]] = [
        ["size"] + [_size(n.get("size_bytes"), parent["size_bytes"]) for _, n, _ in columns]
    ]
    for b in batches:
        for key, label, fmt in (
            ("p50_ms", f"p50 batch {b}", "{:.3f} ms"),
            ("p99_ms", f"p99 batch {b}", "{:.3f} ms"),
            ("throughput", f"rows/s batch {b}", "{:,.0f}"),
        ):
            rows.append([label] + [_get(n, ("timing", b, key), fmt) for _, n, _ in columns])
    rows.append(
        ["max |drift|"] + ["-"] + [_get(n, ("drift", "max_abs_diff"), "{:.3g}") for _, n, _ in columns[1:]]
    )
    agreement = {name for _, n, _ in columns for name in n.get("drift", {}).get("agreement", {})}
    for name in sorted(agreement):
        rows.append(
            [f"{name} agrees"]
            + ["-"]
            + [_get(n, ("drift", "agreement", name), "{:.2%}") for _, n, _ in columns[1:]]
        )
    quality = parent.get("quality") or {}
    for key, fmt in (("accuracy", "{:.4f}"), ("f1", "{:.4f}"), ("rmse", "{:.4g}")):
        if key in quality:
            rows.append([key] + [_get(n, ("quality", key), fmt) for _, n, _ in columns])
    rows.append(["verdict", "-"] + [_verdict(c, result) for _, _, c in columns[1:] if c is not None])
    title = f"optimize {result.parent.ref} on {result.data['rows']} rows of {result.data['source']}"
    return titled_table(title, ("", *(name for name, _, _ in columns)), rows, right=())


def _verdict(c: Any, result: OptimizeResult) -> str:
    if c.skipped:
        return f"skipped: {c.skipped}"
    if c.problems:
        return "refused: " + "; ".join(c.problems)
    if result.chosen is c:
        return "[green]kept[/]" if result.version is not None else "kept (the parent as it is)"
    return "passed"


def _size(n: int | None, parent: int) -> str:
    if n is None:
        return "-"
    change = "" if n == parent else f" ({(n - parent) / parent:+.0%})"
    return human_size(n) + change


def _get(numbers: dict[str, Any], path: tuple[str, ...], fmt: str) -> str:
    value: Any = numbers
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return "-"
        value = value[key]
    return fmt.format(value)
