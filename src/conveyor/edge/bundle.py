"""An edge bundle of a registered version: the model in ORT format (optionally quantized), its signature, the
required-operators config for a minimal ONNX Runtime build, a runner that needs only onnxruntime and numpy,
and a manifest with the SHA-256 of every file (docs/operations.md, Edge bundle)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from conveyor import __version__, errors
from conveyor.files import check_output_folder
from conveyor.formats.parity import first_line
from conveyor.formats.signature import Signature

if TYPE_CHECKING:
    from conveyor.optimize.quantize import Method
    from conveyor.registry import VersionInfo

FORMAT = "conveyor.edge/v1"
"""The manifest's ``format``; the runner refuses any other."""
MODEL_FILE = "model.ort"
SIGNATURE_FILE = "signature.json"
OPS_CONFIG_FILE = "required_operators.config"
RUNNER_FILE = "run.py"
MANIFEST_FILE = "manifest.json"
RUNNER_TEMPLATE = Path(__file__).with_name("runner_template.py")
QUANTIZE_METHODS = ("dynamic", "fp16")
"""The methods that need no data; static int8 needs calibration rows, so `conveyor optimize` makes it."""


@dataclass(frozen=True)
class Bundle:
    """What ``build`` wrote: the folder and its manifest."""

    path: Path
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), **self.manifest}


def build(
    version: VersionInfo, onnx_bytes: bytes, out: Path, *, quantize: str | None = None, force: bool = False
) -> Bundle:
    """Write ``version``'s bundle to the folder ``out`` (made whole in a temp folder beside it, then renamed).

    ``out`` must not exist, be empty, or (with ``force``) be an earlier edge bundle, which is replaced; any
    other folder is refused, so ``--force`` never deletes a folder of someone else's files."""
    if quantize is not None and quantize not in QUANTIZE_METHODS:
        raise errors.InvalidInput(
            f"--quantize {quantize!r} is not one of {', '.join(QUANTIZE_METHODS)}; for static int8, run "
            "`conveyor optimize REF --quantize static --calibration FILE` and export the version it registers"
        )
    out = out.absolute()
    check_output_folder(out, force, _owned, "an edge bundle", "a bundle")
    source = onnx_bytes
    if quantize is not None:
        from conveyor.optimize.quantize import quantize as run_quantize

        source = run_quantize(onnx_bytes, cast("Method", quantize))  # one of QUANTIZE_METHODS (checked)
    signature = Signature.from_onnx_bytes(source)
    with errors.disk_full_as_error(str(out)):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            ort_info = _to_ort(source, staging)
            (staging / SIGNATURE_FILE).write_text(json.dumps(signature.to_dict(), indent=2) + "\n")
            shutil.copyfile(RUNNER_TEMPLATE, staging / RUNNER_FILE)
            manifest = _manifest(version, signature, quantize, ort_info, staging)
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            if out.exists():  # empty, or an earlier bundle that --force replaces (checked above)
                shutil.rmtree(out)
            staging.chmod(0o755)  # mkdtemp's 0700 is for the folder under construction only
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Bundle(out, manifest)


def _owned(folder: Path) -> set[str] | None:
    if not is_bundle(folder):
        return None
    files = json.loads((folder / MANIFEST_FILE).read_text()).get("files", {})
    return {MANIFEST_FILE, *files, "__pycache__"}  # __pycache__: from `import run`


def is_bundle(folder: Path) -> bool:
    """Whether ``folder`` holds an edge bundle's manifest (what ``--force`` may replace)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _to_ort(onnx_bytes: bytes, staging: Path) -> dict[str, Any]:
    """Convert with ONNX Runtime's own tool, into ``staging``: ``model.ort`` and the operators config."""
    import onnxruntime as ort
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    # The tool logs "Created config in <temp path>" at INFO on a logger it sets to DEBUG: not for users.
    tool_log = logging.getLogger("ort_format_model.utils")

    with tempfile.TemporaryDirectory(prefix="conveyor-edge-") as tmp:
        source = Path(tmp) / "model.onnx"
        source.write_bytes(onnx_bytes)
        converted = Path(tmp) / "ort"
        log = io.StringIO()
        level = tool_log.level
        tool_log.setLevel(logging.WARNING)
        try:
            # Fixed: the graph optimized for the CPU provider once, here (level "all" less the NCHWc layout
            # transform, which the tool leaves out so one file runs on x86 and ARM alike); the tool prints its
            # progress, which is not ours to show.
            with contextlib.redirect_stdout(log):
                convert_onnx_models_to_ort(
                    source, output_dir=converted, optimization_styles=[OptimizationStyle.Fixed]
                )
        except Exception as e:  # the tool raises whatever ONNX Runtime's loader raises
            raise errors.ConversionError(f"conversion to ORT format failed: {first_line(e)}") from e
        finally:
            tool_log.setLevel(level)
        shutil.copyfile(converted / "model.ort", staging / MODEL_FILE)
        # named after the model file when one file is converted; its comment names the temp path
        config = (converted / f"model.{OPS_CONFIG_FILE}").read_text()
        (staging / OPS_CONFIG_FILE).write_text(config.replace(str(converted / "model.ort"), MODEL_FILE))
    return {
        "tool": "onnxruntime.tools.convert_onnx_models_to_ort",
        "optimization_style": "Fixed",
        "optimization_level": "all (without the NCHWc layout transform)",
        "execution_provider": "CPUExecutionProvider",
        "onnxruntime_version": ort.__version__,
    }


def _manifest(
    version: VersionInfo,
    signature: Signature,
    quantize: str | None,
    ort_info: dict[str, Any],
    staging: Path,
) -> dict[str, Any]:
    files = {}
    for name in (MODEL_FILE, SIGNATURE_FILE, OPS_CONFIG_FILE, RUNNER_FILE):
        data = (staging / name).read_bytes()
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {
        "format": FORMAT,
        "model": {
            "name": version.name,
            "version": version.version,
            "ref": version.ref,
            "sha256": version.sha256,
            "framework": version.framework,
            "description": version.description,
        },
        "quantization": None if quantize is None else {"method": quantize, "of_sha256": version.sha256},
        "model_file": MODEL_FILE,
        "ort_format": {**ort_info, "required_operators": OPS_CONFIG_FILE},
        "onnxruntime_version": ort_info["onnxruntime_version"],
        "signature": signature.to_dict(),
        "files": files,
        "runner": f"python {RUNNER_FILE} --input x.npy (needs onnxruntime and numpy only)",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "built_by": f"conveyor {__version__}",
    }
