"""Reading the files back: every process's lines merged by time, rotations in order, filters, following."""

from __future__ import annotations

from pathlib import Path

import orjson

from conveyor.observe.logread import Follower, LogFilter, read_lines


def line(t: int, **fields: object) -> bytes:
    return orjson.dumps({"time": f"2026-12-01T10:00:{t:02d}.000000Z", **fields}) + b"\n"


def write(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(lines))


def test_lines_of_every_process_merge_by_time_rotations_first(tmp_path: Path) -> None:
    write(tmp_path / "gateway-8080.jsonl.1", line(1, component="gateway"), line(4, component="gateway"))
    write(tmp_path / "gateway-8080.jsonl", line(6, component="gateway"))
    write(tmp_path / "control.jsonl", line(2, component="control"), b"torn {\n", line(5, component="control"))
    write(tmp_path / "replica-clf-abc123-0f0f0f.jsonl", line(3, component="replica"))
    (tmp_path / "clf-abc123-0f0f0f.log").write_text("not a json-lines file\n")
    assert [int(t[17:19]) for t, _, _ in read_lines(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_filters_by_deployment_request_time_and_component(tmp_path: Path) -> None:
    write(
        tmp_path / "gateway-8080.jsonl",
        line(1, component="gateway", model="clf", request_id="a"),
        line(2, component="gateway", model="clf-2", request_id="b"),
        line(3, component="gateway", message="no model"),
    )
    write(
        tmp_path / "replica-clf-abc123-0f0f0f.jsonl",
        line(4, component="replica", replica="clf-abc123-0f0f0f"),
    )
    write(
        tmp_path / "replica-clf-2-abc123-0f0f0f.jsonl",
        line(5, component="replica", replica="clf-2-abc123-0f0f0f"),
    )

    def times(keep: LogFilter) -> list[int]:
        return [int(t[17:19]) for t, _, _ in read_lines(tmp_path, keep)]

    assert times(LogFilter(deployment="clf")) == [1, 4]  # not clf-2's request, nor its replica
    assert times(LogFilter(deployment="clf-2")) == [2, 5]
    assert times(LogFilter(request_id="b")) == [2]
    assert times(LogFilter(since="2026-12-01T10:00:03.000000Z")) == [3, 4, 5]
    assert times(LogFilter(components=frozenset({"replica"}))) == [4, 5]


def test_follow_reads_new_lines_new_files_and_a_rotated_files_tail(tmp_path: Path) -> None:
    current = tmp_path / "gateway-8080.jsonl"
    write(current, line(1))
    follower = Follower(tmp_path)
    try:
        assert follower.poll() == []  # what was there is read by read_lines, not again
        write(current, line(2), line(3)[:10])  # a line still being written waits for its end
        assert [t[17:19] for t, _, _ in follower.poll()] == ["02"]
        write(current, line(3)[10:], line(4))
        current.rename(tmp_path / "gateway-8080.jsonl.1")  # rotated: the writer goes on in a new file
        write(current, line(5))
        write(tmp_path / "replica-clf-abc123-0f0f0f.jsonl", line(6))  # a process that started meanwhile
        assert [t[17:19] for t, _, _ in follower.poll()] == ["03", "04", "05", "06"]
    finally:
        follower.close()
