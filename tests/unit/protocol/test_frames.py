"""The channel's frames: calls, replies and errors round-trip; a stream split anywhere reassembles."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.errors import InvalidInput, NotFound, Overloaded
from conveyor.protocol import frames


@pytest.mark.parametrize("version", [None, "", "7"])
@pytest.mark.parametrize("json_length", [None, 0, 12])
def test_call_round_trip(version: str | None, json_length: int | None) -> None:
    body = b'{"inputs": []}\x00\x01binary'
    call = frames.decode_call(frames.encode_call("mödel", version, "req-ü", json_length) + body)
    assert (call.model, call.version, call.request_id, call.json_length, call.body) == (
        "mödel", version, "req-ü", json_length, body
    )  # fmt: skip


@pytest.mark.parametrize("traceparent", [None, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"])
def test_a_call_carries_the_gateways_traceparent_to_the_replica(traceparent: str | None) -> None:
    body = b'{"inputs": []}'
    call = frames.decode_call(frames.encode_call("m", "1", "r1", None, traceparent) + body)
    assert (call.request_id, call.traceparent, call.body) == ("r1", traceparent, body)


def test_reply_round_trip() -> None:
    payload = frames.encode_reply(5, "r1", "3") + b"abcde\x00"
    assert frames.decode_reply(payload) == (b"abcde\x00", 5, "r1", "3")
    assert frames.decode_reply(frames.encode_reply(None, "r", None) + b"{}") == (b"{}", None, "r", None)


def test_errors_come_back_as_the_same_class() -> None:
    err = frames.decode_error(frames.encode_error(NotFound("no model")))
    assert type(err) is NotFound and err.message == "no model"
    over = frames.decode_error(frames.encode_error(Overloaded("full", retry_after_s=2.5)))
    assert isinstance(over, Overloaded) and over.retry_after_s == 2.5
    assert type(frames.decode_error(b'{"type": "os", "message": "m"}')).__name__ == "ConveyorError"


def test_frames_reassemble_from_any_split() -> None:
    wire = b"".join(b"".join(frames.frame(i, frames.INFER, b"x" * i, b"y")) for i in range(1, 6))
    for cut in range(len(wire)):
        reader = frames.FrameReader()
        got = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert [(s, k, p) for s, k, p in got] == [(i, frames.INFER, b"x" * i + b"y") for i in range(1, 6)]


def test_addresses_parse_or_are_refused() -> None:
    assert frames.parse_address("unix:/tmp/a.sock") == ("unix", "/tmp/a.sock", 0)
    assert frames.parse_address("tcp:127.0.0.1:9000") == ("tcp", "127.0.0.1", 9000)
    with pytest.raises(InvalidInput):
        frames.parse_address("http://x")


def test_frames_after_the_first_of_a_loop_turn_leave_in_one_write() -> None:
    class Transport:
        def __init__(self) -> None:
            self.writes: list[list[bytes]] = []

        def writelines(self, data: list[bytes]) -> None:
            self.writes.append(list(data))

        def is_closing(self) -> bool:
            return False

    async def main() -> Transport:
        transport = Transport()
        outbox = frames.Outbox(transport)  # type: ignore[arg-type]
        for stream in (1, 2, 3):
            outbox.put(frames.frame(stream, frames.OK, b"x"))
        assert len(transport.writes) == 1  # the first at once, the others at the end of the turn
        await asyncio.sleep(0)
        outbox.put(frames.frame(4, frames.OK, b"y"))
        await asyncio.sleep(0)
        outbox.put(frames.frame(5, frames.OK, b"z"))
        outbox.put(frames.frame(6, frames.OK, b"z"))
        outbox.discard()  # the connection went away: what was waiting is dropped
        await asyncio.sleep(0)
        return transport

    writes = asyncio.run(main()).writes
    reader = frames.FrameReader()
    assert [[s for s, _, _ in reader.feed(b"".join(w))] for w in writes] == [[1], [2, 3], [4], [5]]
