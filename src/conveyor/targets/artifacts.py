"""Model references → ONNX files that replica processes load, and the aliases the gateway resolves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.settings import Settings


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str
    version: str | None
    path: Path
    sha256: str | None = None
    """The registered artifact's digest (None for a model file imported here): replicas verify it."""
    monitor: Path | None = None
    """What its replicas watch (drift, when the version has reference statistics); None: nothing."""

    @property
    def launch_args(self) -> list[str]:
        """``--model NAME[:VERSION]=FILE`` (and ``--sha256``, ``--monitor`` NAME[:VERSION]=...) for the
        replica launcher."""
        ref = f"{self.name}{'' if self.version is None else ':' + self.version}"
        args = ["--model", f"{ref}={self.path}"]
        if self.sha256 is not None:
            args += ["--sha256", f"{ref}={self.sha256}"]
        return args if self.monitor is None else [*args, "--monitor", f"{ref}={self.monitor}"]


def materialize(
    refs: list[str],
    directory: Path,
    settings: Settings,
    *,
    trust_pickle: bool = False,
    sample: Any = None,
) -> tuple[list[ModelFile], dict[tuple[str, str], str]]:
    """Write each referenced version's ONNX bytes under ``directory`` (once per version).

    Returns the files and the aliases met on the way, ``{(name, alias): version}``. Registry references
    are resolved here, once, so every replica serves the same versions even if an alias moves meanwhile.
    """
    from conveyor.api import open_registry
    from conveyor.registry.refs import parse_ref

    files: dict[tuple[str, str | None], ModelFile] = {}
    aliases: dict[tuple[str, str], str] = {}
    for ref in refs:
        path = Path(ref)
        if path.suffix and path.exists():
            from conveyor.formats import import_model

            result = import_model(
                path, sample=sample, trust_pickle=trust_pickle, tolerance=settings.parity_tolerance
            )
            target = directory / f"{path.stem}.onnx"
            target.write_bytes(result.onnx_bytes)
            files[(path.stem, None)] = ModelFile(path.stem, None, target)
            continue
        parsed = parse_ref(ref)
        with open_registry(settings) as registry:
            info = registry.resolve(ref)
            version = str(info.version)
            if (info.name, version) not in files:
                target = directory / f"{info.name}-{version}.onnx"
                target.write_bytes(registry.artifact_bytes(info))  # verified; replicas verify again
                monitor = _monitor_file(info.metadata.get("reference"), directory)
                files[(info.name, version)] = ModelFile(info.name, version, target, info.sha256, monitor)
        if parsed.alias is not None:
            aliases[(info.name, parsed.alias)] = version
    return list(files.values()), aliases


def _monitor_file(reference: Any, directory: Path) -> Path | None:
    """Drift with the defaults (``conveyor serve`` has no spec)."""
    from conveyor.observe.monitoring import monitoring_document, write_document

    doc = monitoring_document(reference if isinstance(reference, dict) else None)
    return None if doc is None else write_document(doc, directory / "monitor")[0]
