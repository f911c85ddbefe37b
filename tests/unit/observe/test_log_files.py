"""The JSON-lines files: rotation keeps a process's logs bounded; old replicas' files are pruned."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from conveyor.observe.logfiles import JsonLinesFile, log_files, prune_replica_files


def _write(handler: JsonLinesFile, n: int, size: int = 200) -> None:
    for i in range(n):
        handler.handle(
            logging.LogRecord("conveyor.x", logging.INFO, __file__, 1, f"{i:06d}" + "x" * size, None, None)
        )


def test_rotation_bounds_the_bytes_one_process_keeps(tmp_path: Path) -> None:
    path = tmp_path / "gateway-8080.jsonl"
    handler = JsonLinesFile(path, max_bytes=4096, backups=2)
    _write(handler, 500)  # ~100 KB written
    handler.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["gateway-8080.jsonl", "gateway-8080.jsonl.1", "gateway-8080.jsonl.2"]
    assert all(f.stat().st_size <= 4096 for f in files)
    newest = path.read_text().splitlines()
    assert newest[-1].startswith("000499")  # the newest lines are the ones kept
    older = (tmp_path / "gateway-8080.jsonl.1").read_text().splitlines()
    assert int(older[-1][:6]) + 1 == int(newest[0][:6])  # no line lost between the current file and .1


def test_lines_are_buffered_until_flush_but_errors_are_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    handler = JsonLinesFile(path, max_bytes=1 << 20, backups=1)
    _write(handler, 3, size=10)
    assert path.read_text() == ""
    handler.handle(logging.LogRecord("conveyor.x", logging.ERROR, __file__, 1, "crash", None, None))
    assert path.read_text().splitlines()[-1] == "crash"
    handler.close()


def test_the_files_of_old_replicas_are_pruned_beyond_the_newest(tmp_path: Path) -> None:
    for i in range(6):
        for suffix in ("", ".1"):
            p = tmp_path / f"replica-r{i}.jsonl{suffix}"
            p.write_text("{}\n")
            os.utime(p, (1000 + i, 1000 + i))
    (tmp_path / "control.jsonl").write_text("{}\n")
    spare = tmp_path / "replica-r0.jsonl"
    prune_replica_files(tmp_path, keep=2, spare=spare)
    assert [p.name for p in log_files(tmp_path)] == [
        "control.jsonl",
        "replica-r0.jsonl",
        "replica-r4.jsonl",
        "replica-r4.jsonl.1",
        "replica-r5.jsonl",
        "replica-r5.jsonl.1",
    ]
