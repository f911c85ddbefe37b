"""The agent's local cache (docs/edge.md): the last good versions under ``HOME/edge/DEPLOYMENT``, so a node
restarted while its control plane is away serves what it served before.

Layout: ``versions/MODEL-VERSION-SHA12/`` holds ``model.onnx`` and ``entry.json`` (what was verified);
``current.json`` names the entry being served; ``partial/SHA256.part`` is a download under way (resumed from
its size). An entry appears whole or not at all: it is assembled in a temporary folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from conveyor.files import replacing

MODEL_FILE = "model.onnx"
ENTRY_FILE = "entry.json"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A verified version on disk: its digest checked, its signature too when the policy asked."""

    model: str
    version: str
    sha256: str
    size: int
    verified_at: float
    path: str  # the model file

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}"


class EdgeCache:
    def __init__(self, root: Path, keep: int = 3) -> None:
        """``keep``: versions kept (the one served always among them)."""
        if keep < 1:
            raise ValueError("the cache keeps at least one version")
        self.root = root
        self.keep = keep
        self.versions_dir = root / "versions"
        self.partial_dir = root / "partial"

    def partial(self, sha256: str) -> Path:
        """Where the download of ``sha256`` accumulates (kept across restarts: a download resumes)."""
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        return self.partial_dir / f"{sha256}.part"

    def find(self, model: str, version: str, sha256: str) -> CacheEntry | None:
        entry = self._read(self.versions_dir / _folder(model, version, sha256))
        return entry if entry is not None and entry.sha256 == sha256 else None

    def admit(self, model: str, version: str, sha256: str, verified: Path) -> CacheEntry:
        """Move the verified file ``verified`` into the cache as ``model:version`` (atomically)."""
        folder = self.versions_dir / _folder(model, version, sha256)
        tmp = self.versions_dir / f".tmp-{folder.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        size = verified.stat().st_size
        os.replace(verified, tmp / MODEL_FILE)
        entry = CacheEntry(model, version, sha256, size, time.time(), str(folder / MODEL_FILE))
        with replacing(tmp / ENTRY_FILE) as f:
            f.write(orjson.dumps(asdict(entry)))
        shutil.rmtree(folder, ignore_errors=True)  # an earlier copy of the same digest
        os.replace(tmp, folder)
        return entry

    def entries(self) -> list[CacheEntry]:
        """Every cached version, oldest verification first."""
        if not self.versions_dir.is_dir():
            return []
        found = [self._read(d) for d in self.versions_dir.iterdir() if not d.name.startswith(".")]
        return sorted((e for e in found if e is not None), key=lambda e: e.verified_at)

    def current(self) -> CacheEntry | None:
        """The entry served last (None: none yet, or its files are gone)."""
        try:
            doc = orjson.loads((self.root / "current.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return self.find(str(doc.get("model")), str(doc.get("version")), str(doc.get("sha256")))

    def set_current(self, entry: CacheEntry) -> None:
        doc = {"model": entry.model, "version": entry.version, "sha256": entry.sha256}
        with replacing(self.root / "current.json") as f:
            f.write(orjson.dumps(doc))

    def prune(self) -> list[CacheEntry]:
        """Remove the oldest entries beyond ``keep`` (never the current one); what was removed."""
        current = self.current()
        others = [e for e in self.entries() if current is None or e.sha256 != current.sha256]
        room = self.keep - (current is not None)
        removed = others[: max(0, len(others) - room)]
        for e in removed:
            shutil.rmtree(Path(e.path).parent, ignore_errors=True)
        return removed

    def _read(self, folder: Path) -> CacheEntry | None:
        try:
            doc: dict[str, Any] = orjson.loads((folder / ENTRY_FILE).read_bytes())
            entry = CacheEntry(**doc)
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None
        with contextlib.suppress(OSError):
            if Path(entry.path).stat().st_size == entry.size:
                return entry
        return None


def _folder(model: str, version: str, sha256: str) -> str:
    return f"{model}-{version}-{sha256[:12]}"
