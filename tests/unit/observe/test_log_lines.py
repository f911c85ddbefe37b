"""What a log record becomes: JSON fields (extras included), the text line, redaction, bounded fields."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
import structlog

from conveyor.observe.logformat import MAX_FIELD_CHARS, formatter, redact
from conveyor.observe.logs import configure_logging
from conveyor.settings import Settings

TOKEN = "cvy_0123456789abcdef_" + "S" * 43
SPAN = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def record(name: str, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args or None, None)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_has_the_head_fields_then_every_extra_key() -> None:
    line = formatter("json", "replica", "iris-abc123-0f0f0f").format(
        record("conveyor.frontend", "request %s failed", "r1", request_id="r1", model="iris", version="2")
    )
    doc = orjson.loads(line)
    assert list(doc)[:6] == ["time", "level", "component", "replica", "logger", "message"]
    assert (
        doc["level"] == "warning" and doc["component"] == "replica" and doc["replica"] == "iris-abc123-0f0f0f"
    )
    assert doc["message"] == "request r1 failed" and doc["logger"] == "conveyor.frontend"
    assert (doc["request_id"], doc["model"], doc["version"]) == ("r1", "iris", "2")
    assert doc["time"].endswith("Z") and len(doc["time"]) == len("2026-01-02T03:04:05.678901Z")


def test_an_access_record_carries_the_contract_fields_as_json_types() -> None:
    fields = {
        "request_id": "abc",
        "model": "iris",
        "version": "1",
        "protocol": "rest",
        "status": 503,
        "latency_ms": 1.25,
        "traceparent": SPAN,
    }
    doc = orjson.loads(formatter("json", "gateway").format(record("conveyor.access", "request", **fields)))
    assert {k: doc[k] for k in fields} == fields
    assert doc["message"] == "request" and doc["component"] == "gateway" and "replica" not in doc


def test_the_text_line_reads_as_before_with_the_extras_after_it() -> None:
    line = formatter("text", "gateway").format(
        record("conveyor.gateway", "replica %s ejected", "r1", model="m")
    )
    assert line.endswith(" WARNING conveyor.gateway: replica r1 ejected model=m")


@pytest.mark.parametrize(
    "secret",
    [
        f"Authorization: Bearer {TOKEN}",
        f"authorization=Bearer {TOKEN}",
        f"{{'authorization': 'Bearer {TOKEN}'}}",
        f"token {TOKEN} refused",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
    ],
)
def test_credentials_never_reach_a_line(secret: str) -> None:
    for kind in ("json", "text"):
        line = formatter(kind, "control").format(record("conveyor.x", "got %s", secret, header=secret))
        assert "S" * 20 not in line and "dXNlcjpwYXNzd29yZA" not in line and "eyJzdWIi" not in line, line
        assert "***" in line
    assert "cvy_0123456789abcdef_***" in redact(f"token {TOKEN}")  # the public id stays: it names the token


def test_a_huge_field_is_cut_not_written_whole() -> None:
    data = "0.125," * 100_000  # a tensor logged by mistake
    doc = orjson.loads(
        formatter("json", "replica").format(record("conveyor.x", "inputs %s", data, body=data))
    )
    assert len(doc["message"]) < MAX_FIELD_CHARS + 100 and len(doc["body"]) < MAX_FIELD_CHARS + 100
    assert doc["body"].endswith("characters cut)")


def test_stdlib_and_structlog_loggers_write_the_same_json_lines_to_the_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_level="info")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(settings, component="gateway", instance="8080")
        logging.getLogger("conveyor.test").info("plain %d", 1, extra={"request_id": "r-9"})
        structlog.get_logger("conveyor.test").warning("structured", request_id="r-10", model="m")
        logging.getLogger("conveyor.access").info("request", extra={"request_id": "r-11", "status": 200})
        logging.getLogger("conveyor.test").debug("below the file's level")
        for h in root.handlers:
            h.flush()
        lines = [
            orjson.loads(x) for x in (tmp_path / "logs" / "gateway-8080.jsonl").read_bytes().splitlines()
        ]
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert [(d["message"], d["request_id"]) for d in lines] == [
        ("plain 1", "r-9"),
        ("structured", "r-10"),
        ("request", "r-11"),
    ]
    assert {d["component"] for d in lines} == {"gateway"} and lines[1]["model"] == "m"
