"""``conveyor init ci --github|--gitlab``: write a CI/CD pipeline that releases a model with the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conveyor.cicd import DEFAULT_PATHS, PipelineOptions, Target, write
from conveyor.cli.output import console
from conveyor.errors import InvalidInput

app = typer.Typer(help="Write starter files for a project that uses Conveyor.", no_args_is_help=True)
_DEFAULTS = PipelineOptions()


@app.command("ci")
def ci(
    github: Annotated[bool, typer.Option("--github", help="A GitHub Actions workflow.")] = False,
    gitlab: Annotated[bool, typer.Option("--gitlab", help="A GitLab CI pipeline.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=f"Where to write it (default: {DEFAULT_PATHS['github']} or {DEFAULT_PATHS['gitlab']}).",
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="The model's name in the registry.")] = _DEFAULTS.model,
    file: Annotated[
        str, typer.Option(help="The model file, relative to the repository's root; a change to it runs it.")
    ] = _DEFAULTS.file,
    deployment: Annotated[
        str | None, typer.Option(help="The deployment to roll out to (default: the model's name).")
    ] = None,
    max_drift: Annotated[
        float, typer.Option(help="The largest output drift the int8 version may have (optimize --max-drift).")
    ] = _DEFAULTS.max_drift,
    package: Annotated[
        str,
        typer.Option(
            help="What the pipeline installs Conveyor from: a name on your index, a wheel or git URL."
        ),
    ] = _DEFAULTS.package,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a pipeline that, when the model file changes, registers it, quantizes it (int8, kept within
    --max-drift), validates it and rolls it out to the deployment, waiting for promotion — each step a
    `conveyor` command whose exit code passes or fails the job, the version it made read from its --json.
    CONVEYOR_URL and CONVEYOR_TOKEN come from the CI's secrets."""
    if github == gitlab:
        raise InvalidInput("give one of --github or --gitlab")
    target: Target = "github" if github else "gitlab"
    options = PipelineOptions(
        model=model, file=file, deployment=deployment, max_drift=max_drift, package=package
    )
    path = write(target, options, output or Path(DEFAULT_PATHS[target]), force=force)
    console.print(
        f"[green]Wrote[/] {path}: register → optimize → validate → rollout of {options.model} to "
        f"deployment/{options.deployment or options.model}",
        highlight=False,
    )
    where = "repository secrets" if target == "github" else "CI/CD variables (masked)"
    console.print(
        f"set CONVEYOR_URL and CONVEYOR_TOKEN as {where} (a token: conveyor tokens create ci -r deployer)",
        highlight=False,
    )
