"""``conveyor build REF -o DIR``: a registered version as a container image's build context, built through
the Docker Engine API when a daemon answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import conveyor
from conveyor.cli.output import console, print_json
from conveyor.settings import get_settings

# conveyor.container (the context, the Engine API client) loads inside the command.


def build(
    ref: Annotated[str, typer.Argument(help="The version to build: NAME:VERSION, NAME@ALIAS or NAME.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="The context's folder: new, empty, or an earlier context with --force."
        ),
    ],
    tag: Annotated[
        str | None, typer.Option(help="The image's name and tag (default conveyor-NAME:VERSION).")
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            help="Where the tokens file will be mounted in the container (docker run -v FILE:PATH:ro): the "
            "image serves with --token-file PATH and holds no token. Without it the image serves --public.",
        ),
    ] = None,
    wheel: Annotated[
        Path | None,
        typer.Option(
            help="The conveyor wheel to install (this version's); default: built from this checkout."
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(help="The base image (default python:MAJOR.MINOR-slim of the running Python)."),
    ] = None,
    require_build: Annotated[
        bool,
        typer.Option(
            "--require-build", help="Fail (exit 7) when no Docker daemon answers, instead of exit 0."
        ),
    ] = False,
    docker_host: Annotated[
        str | None,
        typer.Option(envvar="DOCKER_HOST", help="The daemon: unix:///PATH or tcp://HOST:PORT."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier context in the folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON for scripts.")] = False,
) -> None:
    """Write REF's image build context to DIR — a Dockerfile (slim Python base, the pinned dependencies,
    a non-root user, a HEALTHCHECK on /v2/health/ready, conveyor serve on port 8080), the artifact named
    by its SHA-256, the running Conveyor's wheel — and build it with the Docker daemon when one answers.
    With none, says so and leaves the context (docker build DIR builds it elsewhere)."""
    from conveyor.container import DockerEngine, EngineUnreachable, build_context

    with conveyor.open_registry(get_settings()) as registry:
        version = registry.resolve(ref)
        data = registry.artifact_bytes(version)
    context = build_context(
        version, data, output, wheel=wheel, token_file=token_file, base=base_image, force=force
    )
    image = tag or context.tag
    result = {**context.to_dict(), "tag": image, "built": False, "image_id": None}
    if not as_json:
        console.print(
            f"[green]Wrote[/] the build context of [bold]{version.ref}[/] to {context.path} "
            f"({len(context.manifest['files'])} files, {context.manifest['pins']} pinned dependencies)",
            highlight=False,
        )
    with DockerEngine(docker_host) as engine:
        try:
            engine.ping()
        except EngineUnreachable as e:
            if require_build:
                raise
            result["daemon"] = e.message
            if as_json:
                print_json(result)
            else:
                console.print(
                    f"{e.message}: not built; the context is in {context.path} (docker build -t {image} "
                    f"{context.path})",
                    highlight=False,
                    soft_wrap=True,
                )
            return
        echo = (
            (lambda _line: None)
            if as_json
            else (lambda line: console.print(line, markup=False, highlight=False))
        )
        result["image_id"] = engine.build(context.path, image, echo)
        result["built"] = True
    if as_json:
        print_json(result)
    else:
        console.print(f"[green]Built[/] {image} ({result['image_id']})", highlight=False)
