"""A CI/CD pipeline that releases a model with the CLI — register, quantize, validate, roll out — written from
the templates beside this module for GitHub Actions or GitLab CI (``conveyor init ci``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conveyor import __version__, errors
from conveyor.files import replacing

Target = Literal["github", "gitlab"]
TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_PATHS: dict[Target, str] = {"github": ".github/workflows/conveyor.yml", "gitlab": ".gitlab-ci.yml"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A path or package spec goes into a double-quoted YAML string and a double-quoted shell word: nothing that
# either would read as syntax.
_UNSAFE = re.compile(r'["\\$`\n\r\t]')
_TOKEN = re.compile(r"@[A-Z_]+@")


@dataclass(frozen=True)
class PipelineOptions:
    model: str = "model"
    """The registered model's name."""
    file: str = "model.onnx"
    """The model file in the repository, relative to its root: its changes start the pipeline."""
    deployment: str | None = None
    """The deployment to roll out to (default: the model's name)."""
    max_drift: float = 0.05
    """The largest output drift the int8 version may have against the registered one."""
    package: str = f"conveyor=={__version__}"
    """What the pipeline installs Conveyor from: a name on your index, a wheel's URL, a git URL."""

    def check(self) -> None:
        for option, value in (("--model", self.model), ("--deployment", self.deployment or self.model)):
            if not _NAME.match(value):
                raise errors.InvalidInput(
                    f"{option} {value!r}: letters, digits, '.', '_' and '-', starting with a letter or digit"
                )
        for option, value in (("--file", self.file), ("--package", self.package)):
            if not value or _UNSAFE.search(value):
                raise errors.InvalidInput(
                    f"{option} {value!r}: must be non-empty, without quotes, backslashes, $, ` or line breaks"
                )
        if Path(self.file).is_absolute() or ".." in Path(self.file).parts:
            raise errors.InvalidInput(
                f"--file {self.file!r}: a path inside the repository, relative to its root"
            )
        if not (math.isfinite(self.max_drift) and self.max_drift > 0):
            raise errors.InvalidInput(f"--max-drift must be a number above zero, not {self.max_drift}")


def render(target: Target, options: PipelineOptions) -> str:
    """The pipeline file's text for ``target``."""
    options.check()
    text = (TEMPLATES / f"{target}.yml").read_text(encoding="utf-8")
    values = {
        "@CONVEYOR_VERSION@": __version__,
        "@MODEL_NAME@": options.model,
        "@MODEL_FILE@": Path(options.file).as_posix(),
        "@DEPLOYMENT@": options.deployment or options.model,
        "@MAX_DRIFT@": f"{options.max_drift:g}",
        "@PACKAGE@": options.package,
    }
    for token, value in values.items():
        text = text.replace(token, value)
    left = _TOKEN.search(text)
    assert left is None, f"template {target}.yml has an unknown placeholder {left.group()}"
    return text


def write(target: Target, options: PipelineOptions, path: Path, *, force: bool = False) -> Path:
    """Write the pipeline to ``path``; Conflict when a file is there and not ``force``."""
    text = render(target, options)
    if path.exists() and not force:
        raise errors.Conflict(f"{path} exists: --force overwrites it")
    with replacing(path) as f:
        f.write(text.encode())
    path.chmod(0o644)  # the temp file's 0600 is for the file under construction only
    return path
