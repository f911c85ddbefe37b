"""The inference log: sampled JSON lines written by a thread, size-capped and rotated, dropped when full."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from conveyor.observe.inference_log import FILE, InferenceLog


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_nth_request_is_written_with_its_inputs_and_outputs(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path, model="iris", version="2", sample_every=2, max_bytes=10**6, keep=1)
    for i in range(5):
        x = np.full((1, 2), i, dtype=np.float32)
        log.observe(f"r{i}", {"x": x, "t": np.array([b"hi"], dtype=object)}, {"y": x[:, ::-1] * 2})
    log.close()
    records = lines(tmp_path / FILE)
    assert [r["request_id"] for r in records] == ["r0", "r2", "r4"]
    first = records[1]
    assert first["model"] == "iris" and first["version"] == "2" and isinstance(first["time"], float)
    assert first["inputs"] == {"x": [[2.0, 2.0]], "t": ["hi"]}
    assert first["outputs"] == {"y": [[4.0, 4.0]]}  # a non-contiguous view is written too
    assert log.written == 3 and log.dropped == 0


def test_the_file_rotates_past_max_bytes_and_keeps_only_keep_files(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path, model="m", version="1", sample_every=1, max_bytes=2000, keep=2)
    for i in range(200):
        log.observe(f"request-{i:04d}", {"x": np.arange(8.0)}, {"y": np.arange(4.0)})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert files == [FILE, f"{FILE}.1", f"{FILE}.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 2000
    newest = lines(tmp_path / FILE)
    assert newest[-1]["request_id"] == "request-0199"


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    log = InferenceLog(
        tmp_path, model="m", version="1", sample_every=1, max_bytes=10**6, keep=1, queue_size=4
    )
    blocked = threading.Event()
    release = threading.Event()
    append = log._append

    def slow_append(lines: list[bytes]) -> None:
        blocked.set()
        release.wait(10)
        append(lines)

    log._append = slow_append  # type: ignore[method-assign]
    log.observe("first", {"x": np.zeros(1)}, {})
    assert blocked.wait(10)  # the writer holds the first record; the queue takes four more
    for i in range(10):
        log.observe(f"r{i}", {"x": np.zeros(1)}, {})
    assert log.dropped == 6
    release.set()
    log.close()
    assert log.written == 5
    assert len(lines(tmp_path / FILE)) == 5


def test_two_writers_share_one_file_set(tmp_path: Path) -> None:
    a = InferenceLog(tmp_path, model="m", version="1", sample_every=1, max_bytes=3000, keep=1)
    b = InferenceLog(tmp_path, model="m", version="2", sample_every=1, max_bytes=3000, keep=1)
    for i in range(30):
        a.observe(f"a{i}", {"x": np.arange(4.0)}, {})
        b.observe(f"b{i}", {"x": np.arange(4.0)}, {})
    a.close()
    b.close()
    for name in (FILE, f"{FILE}.1"):
        for record in lines(tmp_path / name):  # whole lines only: no write interleaved with another
            assert record["version"] in ("1", "2")
