"""``conveyor validate``: run a version's real server through the regression, performance and stability
gates; a report, the verdict stored on the version, exit 0 only when every gate passes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import conveyor
from conveyor.cli.output import console, err_console, print_json, titled_table
from conveyor.errors import ConversionError, InvalidInput
from conveyor.settings import get_settings
from conveyor.spec.units import parse_duration

if TYPE_CHECKING:
    from conveyor.validate import ValidationResult

# conveyor.validate (scikit-learn's metrics, numpy, the codec) loads inside the command.

FileOpt = Path | None


def validate(
    ref: Annotated[str, typer.Argument(help="The version to validate: NAME:VERSION, NAME@ALIAS or NAME.")],
    dataset: Annotated[
        FileOpt,
        typer.Option(
            help="Rows (.npy, .npz, .csv) to send (default: rows drawn from the version's reference "
            "statistics)."
        ),
    ] = None,
    labels: Annotated[
        FileOpt, typer.Option(help="The true answer for each row of --dataset (.npy, .csv).")
    ] = None,
    expected: Annotated[
        FileOpt,
        typer.Option(help="The outputs the version should give on --dataset (.npz by output name, or .npy)."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="A version to compare with (served the same way): outputs, accuracy, latency."),
    ] = None,
    gates: Annotated[
        FileOpt, typer.Option(help="The gates' bounds (YAML or JSON; docs/validate.md). Default: built-in.")
    ] = None,
    soak: Annotated[
        str | None,
        typer.Option(help="How long the stability soak runs: 10s, 2m (default: the gates file's)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Requests in flight in the performance gate (default: the gates file's).", min=1, max=256
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="Validate the server already running at this URL (serving REF) instead of starting one; "
            "its memory is read from its /metrics."
        ),
    ] = None,
    report: Annotated[
        FileOpt,
        typer.Option(
            help="Where to write the HTML report (default: "
            "$CONVEYOR_HOME/reports/validate-NAME-VERSION-TIME.html)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")] = False,
) -> None:
    """Start REF's real server (and the baseline's) on loopback, drive them with V2 requests through the gates
    — regression (labels, expected outputs, the baseline's answers), performance (p50, p99, throughput at a
    concurrency), stability (a soak: no errors, bounded memory growth) — write an HTML report and store the
    verdict on the version (tag validated=true|false). Exit 0 when every gate passes, 6 when one fails."""
    from conveyor.validate import ValidateOptions, load_gates
    from conveyor.validate import validate as run_validate

    spec = load_gates(gates)
    if soak is not None:
        spec = spec.model_copy(
            update={"stability": spec.stability.model_copy(update={"seconds": _soak(soak)})}
        )
    if concurrency is not None:
        update = {"performance": spec.performance.model_copy(update={"concurrency": concurrency})}
        spec = spec.model_copy(update=update)
    settings = get_settings()
    options = ValidateOptions(
        dataset=dataset,
        labels=labels,
        expected=expected,
        baseline=baseline,
        url=url,
        headers=_url_headers(settings, url),
        gates=spec,
    )
    options.check()  # bad options fail here, before the registry opens
    with conveyor.open_registry(settings) as registry:
        version = registry.resolve(ref)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        default = settings.home / "reports" / f"validate-{version.name}-{version.version}-{stamp}.html"
        options = ValidateOptions(**{**options.__dict__, "report": (report or default).absolute()})
        with _Status() as status:
            result = run_validate(registry, version.ref, options, status)
    if as_json:
        print_json(result.to_dict())
    else:
        console.print(_table(result))
        verdict = "[green]passed[/]" if result.passed else "[red]failed[/]"
        console.print(f"{result.version.ref}: {verdict}; report {result.report}", highlight=False)
        if result.stored is not None:
            tag = "true" if result.passed else "false"
            console.print(f"stored on {result.version.ref} (tag validated={tag})", highlight=False)
    if not result.passed:
        raise ConversionError(f"validation of {result.version.ref} {result.summary}")


def _url_headers(settings: Any, url: str | None) -> dict[str, str]:
    """The bearer token for a --url endpoint, as every client command sends one: CONVEYOR_TOKEN, else the
    local admin token for a loopback URL (a `conveyor up` gateway asks one)."""
    if url is None:
        return {}
    from conveyor.security.credentials import auth_headers

    return auth_headers(settings, url)


def _soak(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(f"--soak: {exc}") from None
    if not 0 < seconds <= 3600:
        raise InvalidInput(f"--soak must be above zero and at most 1h, got {text!r}")
    return seconds


class _Status:
    """What runs now, on stderr (nothing when stderr is no terminal)."""

    def __init__(self) -> None:
        self._status = err_console.status("validating…", spinner="dots")
        self._live = err_console.is_terminal

    def __enter__(self) -> _Status:
        if self._live:
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._status.stop()

    def step(self, what: str) -> None:
        if self._live:
            self._status.update(what)


def _table(result: ValidationResult) -> Any:
    """One row per check: gate, check, the candidate's value, the baseline's, the limit, pass or fail."""
    rows: list[list[str]] = []
    for g in result.gates:
        if g.error is not None:
            rows.append([g.gate, g.error, "-", "-", "-", "[red]fail[/]"])
        for c in g.checks:
            unit = f" {c.unit}" if c.unit else ""
            limit = f"{'≤' if c.op == '<=' else '≥'} {_fmt(c.limit)}{unit}"
            note = f" ({c.note})" if c.note else ""
            verdict = "pass" if c.passed else "[red]fail[/]"
            rows.append([g.gate, c.name + note, _fmt(c.value) + unit, _fmt(c.baseline), limit, verdict])
    data = result.data
    against = f" against {result.baseline.ref}" if result.baseline else ""
    title = f"validate {result.version.ref}{against} on {data['rows']} rows of {data['source']}"
    columns = ("gate", "check", result.version.ref, result.baseline.ref if result.baseline else "baseline")
    return titled_table(title, (*columns, "limit", "result"), rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
