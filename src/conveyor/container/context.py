"""The build context of a model's image: the artifact named by its digest (checked as written), its
signature, the running Conveyor as a wheel, the runtime dependencies pinned as installed, the Dockerfile."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor
from conveyor import errors
from conveyor.container.dockerfile import (
    CONSTRAINTS_FILE,
    DOCKERIGNORE,
    ImageSpec,
    artifact_file,
    base_image,
    render_dockerfile,
)
from conveyor.digests import verify
from conveyor.files import check_output_folder
from conveyor.registry.records import VersionInfo

MANIFEST_FILE = "conveyor-build.json"  # what --force may replace, and what --json prints
FORMAT = "conveyor-build/v1"


@dataclass(frozen=True, slots=True)
class BuildContext:
    """A written context: its folder, the image's default tag and the manifest of its files."""

    path: Path
    tag: str
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"context": str(self.path), "tag": self.tag, **self.manifest}


def build_context(
    version: VersionInfo,
    data: bytes,
    out: Path,
    *,
    wheel: Path | None = None,
    token_file: str | None = None,
    base: str | None = None,
    force: bool = False,
) -> BuildContext:
    """Write the context of ``version``'s image (its artifact ``data``) to ``out``: new, empty, or an earlier
    context with ``force``. ``wheel`` is a Conveyor wheel to install (it must be this version); without it,
    the running source checkout is built into one."""
    if token_file is not None and not token_file.startswith("/"):
        raise errors.InvalidInput(
            f"--token-file {token_file!r}: give the absolute path where the tokens will be mounted in the "
            "container, e.g. /run/secrets/conveyor-tokens"
        )
    out = out.absolute()
    check_output_folder(out, force, _owned, "a build context", "a context")
    with errors.disk_full_as_error(str(out)):
        if out.exists():
            shutil.rmtree(out)
        try:
            manifest = _write(version, data, out, wheel, token_file, base)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # no half context: it was new, empty or ours
            raise
    return BuildContext(out, default_tag(version), manifest)


def _write(
    version: VersionInfo, data: bytes, out: Path, wheel: Path | None, token_file: str | None, base: str | None
) -> dict[str, Any]:
    (out / "models").mkdir(parents=True)
    artifact = out / "models" / artifact_file(version.sha256)
    artifact.write_bytes(data)
    verify(f"{version.ref}: {artifact}", version.sha256, _sha256(artifact))
    (out / "models" / f"{version.sha256}.json").write_text(json.dumps(_model_doc(version), indent=2) + "\n")
    wheel_path = _place_wheel(wheel, out)
    pins = runtime_constraints()
    (out / CONSTRAINTS_FILE).write_text(
        f"# conveyor {conveyor.__version__}'s runtime dependencies, as installed where it was built.\n"
        + "".join(f"{pin}\n" for pin in pins)
    )
    spec = ImageSpec(
        model=version.name,
        version=version.version,
        sha256=version.sha256,
        wheel=wheel_path.name,
        conveyor_version=conveyor.__version__,
        base=base or base_image(),
        token_file=token_file,
    )
    (out / "Dockerfile").write_text(render_dockerfile(spec))
    (out / ".dockerignore").write_text(DOCKERIGNORE)
    manifest = {
        "format": FORMAT,
        "model": version.ref,
        "sha256": version.sha256,
        "conveyor_version": conveyor.__version__,
        "base_image": spec.base,
        "wheel": wheel_path.name,
        "pins": len(pins),
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def default_tag(version: VersionInfo) -> str:
    """``conveyor-NAME:VERSION``: one image per model version (Docker tags allow no ``@`` or ``:`` inside)."""
    return f"conveyor-{version.name.lower()}:{version.version}"


def runtime_constraints(dist: str = "conveyor") -> list[str]:
    """``NAME==VERSION`` for every package ``dist`` needs at run time (its requirements without its own
    extras, and theirs with the extras asked for, as ``psycopg[binary]``), at the versions installed here,
    sorted. Markers are evaluated for this machine: the image's Linux and Python are the same."""
    from packaging.requirements import Requirement  # onnxruntime's dependency, so always installed
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(dist, frozenset())]
    while todo:
        package, extras = todo.pop()
        for line in importlib.metadata.requires(package) or []:
            req = Requirement(line)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            ):
                continue  # an extra's requirement (dev, torch, ...) not asked for, or another platform's
            name = canonicalize_name(req.name)
            wanted = frozenset(req.extras)
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            try:
                pins[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                raise errors.ConversionError(
                    f"{dist} needs {req.name}, which is not installed here: cannot pin it"
                ) from None
            todo.append((name, wanted))
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def _place_wheel(wheel: Path | None, out: Path) -> Path:
    if wheel is not None:
        expected = f"conveyor-{conveyor.__version__}-"
        if not (wheel.name.startswith(expected) and wheel.suffix == ".whl"):
            raise errors.InvalidInput(
                f"--wheel {wheel.name}: not a wheel of the running conveyor {conveyor.__version__} "
                f"(conveyor-{conveyor.__version__}-*.whl): the image serves with the Conveyor that built it"
            )
        if not wheel.is_file():
            raise errors.InvalidInput(f"--wheel {wheel}: no such file")
        return Path(shutil.copy2(wheel, out / wheel.name))
    return _build_wheel(out)


def _build_wheel(out: Path) -> Path:
    """The running Conveyor built into a wheel in ``out``: from its source checkout (the pyproject.toml two
    folders above the package), with `python -m build` when installed, else `pip wheel`; both without
    build isolation, so no package index is needed."""
    root = Path(conveyor.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise errors.InvalidInput(
            f"conveyor {conveyor.__version__} does not run from a source checkout: give its wheel with "
            f"--wheel conveyor-{conveyor.__version__}-py3-none-any.whl"
        )
    with tempfile.TemporaryDirectory(prefix="conveyor-wheel-") as tmp:
        if _has_build():
            cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp, str(root)]
        else:
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp]
            cmd.append(str(root))
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        wheels = list(Path(tmp).glob(f"conveyor-{conveyor.__version__}-*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel written"]
            raise errors.ConversionError(
                f"building the conveyor wheel failed ({' '.join(cmd[2:4])}): {last[0]}"
            )
        return Path(shutil.move(wheels[0], out / wheels[0].name))


def _has_build() -> bool:
    """Whether PyPA's ``build`` is installed (not merely a ``build/`` folder in the working directory)."""
    try:
        return importlib.util.find_spec("build.__main__") is not None
    except ImportError:
        return False


def _model_doc(version: VersionInfo) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
        "framework": version.framework,
        "signature": version.signature,
        "metadata": version.metadata,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _owned(folder: Path) -> set[str] | None:
    """The names an earlier context in ``folder`` owns (what ``--force`` may replace), None if none."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return {MANIFEST_FILE, *(str(name).split("/")[0] for name in manifest.get("files", []))}
