"""The Dockerfile of a model's image, a pure function of what goes in it (pinned base, non-root user, health
check on the V2 ready endpoint, the artifact under its digest and checked at build)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

PORT = 8080
UID = 10001
MODELS_DIR = "/models"
READY_PATH = "/v2/health/ready"
CONSTRAINTS_FILE = "constraints.txt"


def base_image(version: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)) -> str:
    """The official slim Python image of the running interpreter's minor version: the wheel and the pins
    were made by this Python, so the image runs the same one."""
    return f"python:{version[0]}.{version[1]}-slim"


def artifact_file(sha256: str) -> str:
    """The artifact's name in the context and the image: its digest, so the name says what the bytes are."""
    return f"{sha256}.onnx"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What one image holds: a model version, the Conveyor wheel that serves it, where the tokens are."""

    model: str
    version: int
    sha256: str
    wheel: str  # the wheel's file name in the context
    conveyor_version: str
    base: str
    token_file: str | None = None  # a path inside the container (a mounted secret), never the tokens


def render_dockerfile(spec: ImageSpec) -> str:
    """The Dockerfile's text for ``spec``."""
    artifact = f"{MODELS_DIR}/{artifact_file(spec.sha256)}"
    served = f"{MODELS_DIR}/{spec.model}.onnx"  # `conveyor serve FILE` names the model after the file
    labels = {
        "org.opencontainers.image.title": f"conveyor-{spec.model}",
        "org.opencontainers.image.description": f"{spec.model}:{spec.version} served by Conveyor "
        f"{spec.conveyor_version} over the Open Inference Protocol (V2)",
        "org.opencontainers.image.version": f"{spec.model}-{spec.version}",
        "org.opencontainers.image.base.name": spec.base,
        "dev.conveyor.model": f"{spec.model}:{spec.version}",
        "dev.conveyor.model.sha256": spec.sha256,
        "dev.conveyor.version": spec.conveyor_version,
    }
    label_lines = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    if spec.token_file is not None:
        auth = ["--token-file", spec.token_file]
        auth_note = (
            f"# Callers send a bearer token listed in {spec.token_file}: mount it at run time\n"
            f'# (docker run -v "$PWD/tokens:{spec.token_file}:ro" ...); no token is in the image.'
        )
    else:
        auth = ["--public"]
        auth_note = (
            "# --public: the container listens on 0.0.0.0 and the image holds no token: anyone who\n"
            "# reaches the published port may call the model. Build with --token-file PATH to require tokens."
        )
    entrypoint = ["conveyor", "serve", served, "--host", "0.0.0.0", "--port", str(PORT), *auth]
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}{READY_PATH}', timeout=2)"
    healthcheck = json.dumps(["python", "-c", probe])
    return f"""\
# {spec.model}:{spec.version} (sha256 {spec.sha256}) served by Conveyor {spec.conveyor_version}.
# Written by `conveyor build`; the context beside it is everything the build reads.
FROM {spec.base}

LABEL {label_lines}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    CONVEYOR_HOME=/home/conveyor/.conveyor \\
    CONVEYOR_LOG_TO_FILE=false \\
    CONVEYOR_LOG_FORMAT=json

RUN useradd --uid {UID} --user-group --create-home --home-dir /home/conveyor \\
    --shell /usr/sbin/nologin conveyor

# The Conveyor that wrote this file, and its dependencies at the versions it ran with.
COPY {CONSTRAINTS_FILE} {spec.wheel} /tmp/conveyor/
RUN pip install --no-cache-dir --constraint /tmp/conveyor/{CONSTRAINTS_FILE} /tmp/conveyor/{spec.wheel} \\
 && rm -rf /tmp/conveyor

# The artifact under its digest, checked here: other bytes fail the build.
COPY models/ {MODELS_DIR}/
RUN echo "{spec.sha256}  {artifact}" | sha256sum --check --strict - \\
 && ln -s {artifact_file(spec.sha256)} {served}

USER {UID}:{UID}
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
  CMD {healthcheck}
{auth_note}
ENTRYPOINT {json.dumps(entrypoint)}
"""


DOCKERIGNORE = f"""\
# Only what the Dockerfile copies goes to the daemon.
*
!Dockerfile
!{CONSTRAINTS_FILE}
!*.whl
!models/
"""
