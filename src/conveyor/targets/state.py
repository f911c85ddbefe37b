"""``run/replicas.json``: the replicas a control plane runs on every target, for a restarted one to adopt."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from conveyor.files import replacing
from conveyor.targets.base import ReplicaRecord

log = logging.getLogger("conveyor.targets.state")
STATE_FILE = "replicas.json"


class ReplicaState:
    """The state file of one control plane (one CONVEYOR_HOME), written whole or not at all."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / STATE_FILE

    def load(self) -> list[ReplicaRecord]:
        """The records last saved; none when there is no file or it cannot be read (said in the log)."""
        try:
            data = json.loads(self.path.read_text())
            return [ReplicaRecord.from_dict(r) for r in data.get("replicas", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring unreadable replica state %s: %s", self.path, exc)
            return []

    def save(self, records: Sequence[ReplicaRecord]) -> None:
        """Atomically replace the state file (write a temp file, fsync, rename). On a full disk: DiskFull,
        with the previous state file intact and no temp file left."""
        data = json.dumps({"replicas": [r.to_dict() for r in records]}, indent=1)
        with replacing(self.path) as f:
            f.write(data.encode())
