"""``conveyor tune``: measure serving settings of a version on this machine, keep the fastest under a p99
bound, and write it into a Deployment file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import conveyor
from conveyor.cli.output import console, err_console, print_json, titled_table
from conveyor.errors import ConversionError, InvalidInput
from conveyor.settings import get_settings
from conveyor.spec.units import parse_duration

if TYPE_CHECKING:
    from conveyor.tune import Row, Setting, Trial, TuneResult


def tune(
    ref: Annotated[str, typer.Argument(help="The version to tune: NAME:VERSION, NAME@ALIAS or NAME.")],
    p99_ms: Annotated[
        float, typer.Option("--p99-ms", help="The latency bound: a setting's p99 must stay within it (ms).")
    ],
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", help="Clients sending at once, each waiting for its answer.", min=1
        ),
    ] = 32,
    duration: Annotated[
        str, typer.Option(help="Load measured per trial, after the warm-up: 5s, 500ms.")
    ] = "5s",
    warmup: Annotated[str, typer.Option(help="Load sent and not counted, per trial.")] = "1s",
    budget: Annotated[
        str, typer.Option(help="Time for the whole search, server starts included: 5m, 90s.")
    ] = "5m",
    max_trials: Annotated[int, typer.Option(help="Most trials (servers started).", min=1)] = 20,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Rows the requests carry (.npy, .npz, .csv), one per request (default: drawn from the "
            "version's reference statistics)."
        ),
    ] = None,
    placement: Annotated[
        str | None,
        typer.Option(
            help="Where replicas run in the trials, as conveyor serve --placement (default: as the -o file "
            "places the deployment, else auto: in-process for one replica)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the winner into this Deployment file. A new file gets a whole Deployment; an "
            "existing one keeps everything but replicas, batching.maxBatchSize, "
            "batching.maxQueueDelayMicroseconds, resources.threads (and placement when the measured one "
            "differs); its comments are not kept. Its current settings are the baseline.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")] = False,
) -> None:
    """Find how to serve REF for the most throughput under a p99 bound on this machine: start conveyor
    serve with one setting at a time (threads per replica, replicas, batch size, queue delay), load it
    with --concurrency clients, and print every trial in a table. The defaults (or the -o file's settings)
    are the baseline; the best setting is measured again beside them before it wins. Exit 6 when no
    setting meets the bound."""
    from conveyor.registry.refs import parse_ref
    from conveyor.tune import TuneOptions
    from conveyor.tune import tune as run_tune
    from conveyor.tune.deployment import baseline_of, placement_of, read_target, write

    settings = get_settings()
    target = read_target(output, parse_ref(ref).name, settings) if output is not None else None
    where = placement_of(target, placement)
    options = TuneOptions(
        p99_ms=p99_ms,
        concurrency=concurrency,
        duration_s=_seconds("--duration", duration),
        warmup_s=_seconds("--warmup", warmup, zero=True),
        budget_s=_seconds("--budget", budget),
        max_trials=max_trials,
        data=data,
        placement=where,
    )
    options.check()  # bad options fail here, before a server starts
    baseline = baseline_of(target, settings)
    with conveyor.open_registry(settings) as registry, _Bar() as bar:
        result = run_tune(registry, ref, options, baseline, bar)
    notes: list[str] = []
    written = None
    if result.winner is not None and target is not None:
        model_ref = ref if ":" in ref or "@" in ref else result.version.ref
        notes = write(target, model_ref, result.winner, where)
        written = str(target.path)
    if as_json:
        print_json({**result.to_dict(), "written": written, "notes": notes})
    else:
        console.print(_table(result))
        for line in _summary(result, written, notes):
            console.print(line, highlight=False)
    if result.refusal is not None:
        raise ConversionError(result.refusal)


def _seconds(flag: str, text: str, zero: bool = False) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(f"{flag}: {exc}") from None
    if seconds < 0 or (seconds == 0 and not zero):
        raise InvalidInput(f"{flag} must be above zero, got {text!r}")
    return seconds


class _Bar:
    """A progress bar on stderr over the time budget, naming the trial running (none when stderr is no
    terminal)."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<60}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        self._task = self._progress.add_task("starting", total=None)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, budget_s: float) -> None:
        self._progress.update(self._task, total=budget_s, completed=0)

    def trial(self, number: int, trial: Trial, elapsed_s: float) -> None:
        what = f"trial {number} ({trial.phase}): {_short(trial.setting)}"
        if trial.against is not None:
            what += f" and {_short(trial.against)} in turn"
        self._progress.update(self._task, description=what, completed=elapsed_s)

    def measured(self, row: Row, elapsed_s: float) -> None:
        self._progress.update(self._task, completed=elapsed_s)
        if not self._progress.disable:  # each row as it comes, above the bar (the table follows at the end)
            p99 = "-" if row.p99_ms is None else f"{row.p99_ms:.1f} ms"
            what = f"{row.phase:<16} {_short(row.setting):<24} {row.rps:>8,.0f} req/s  p99 {p99:>9}"
            self._progress.console.print(
                f"{what}  {row.failure or ''}",
                highlight=False,
                markup=False,
            )


def _short(s: Setting) -> str:
    threads = "auto" if s.threads == 0 else str(s.threads)
    return f"t{threads} r{s.replicas} b{s.max_batch_size} d{s.max_queue_delay_us}µs"


def _table(result: TuneResult) -> Any:
    o = result.options
    bound = o.p99_ms
    rows = []
    for i, r in enumerate(result.rows, 1):
        s = r.setting
        won = result.winner is not None and s == result.winner
        rows.append(
            [
                str(i),
                r.phase,
                "auto" if s.threads == 0 else str(s.threads),
                str(s.replicas),
                str(s.max_batch_size),
                str(s.max_queue_delay_us),
                f"{r.rps:,.0f}" if r.failure is None or r.requests else "-",
                _ms(r.p50_ms),
                _ms(r.p99_ms),
                str(r.errors),
                _verdict(r, bound),
                "[green]★[/]" if won else "",
            ]
        )
    title = (
        f"tune {result.version.ref}: concurrency {o.concurrency}, p99 ≤ {bound:g} ms, "
        f"{o.duration_s:g} s per trial; {result.data}"
    )
    columns = (
        "#",
        "phase",
        "threads",
        "replicas",
        "batch",
        "delay µs",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "≤ bound",
        "winner",
    )
    return titled_table(
        title, columns, rows, right=("req/s", "p50 ms", "p99 ms", "errors", "batch", "delay µs")
    )


def _verdict(r: Row, bound: float) -> str:
    if r.meets(bound):
        return "yes"
    if r.failure is not None:
        return f"no: {r.failure}"
    if r.errors:
        return f"no: {r.errors} errors"
    return "no"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _summary(result: TuneResult, written: str | None, notes: list[str]) -> list[str]:
    lines = [f"{len(result.rows)} trials; {result.stopped}."]
    w, base = result.winner, result.baseline
    if w is None:
        return lines
    from conveyor.tune.search import CONFIRM, mean_rps

    in_confirm = [r.setting for r in result.rows if r.phase == CONFIRM]
    won, base_rps, gain = result.winner_rps or 0.0, result.baseline_rps or 0.0, result.gain
    if w == base:
        other = next((s for s in in_confirm if s != base), None)
        if other is None:
            beside = "nothing else met the bound"
        elif result.confirmed:
            rps = mean_rps(result.rows, other, True) or 0.0
            beside = f"the best other setting ({other.label()}) {rps:,.0f} beside it"
        else:
            beside = "not confirmed: neither setting of the confirm round met the bound there"
        lines.append(f"[green]Winner[/]: the baseline ({w.label()}): {won:,.0f} req/s; {beside}.")
    else:
        if result.confirmed:
            how = "both measured again, in turn"
        elif in_confirm:
            how = "in the search (not confirmed: neither setting of the confirm round met the bound there)"
        else:
            how = "in the search, one trial each (no room for a confirm round)"
        change = f" ({gain - 1:+.0%})" if gain else ""
        lines.append(
            f"[green]Winner[/]: {w.label()}: {won:,.0f} req/s against {base_rps:,.0f} for the baseline"
            f"{change}, {how}."
        )
    if written is not None:
        lines.append(f"Wrote {written}" + "".join(f"; {n}" for n in notes) + ".")
    return lines
