"""`conveyor predict --url`: the server's status comes back as the error it stands for (and its exit code)."""

import httpx
import pytest

from conveyor.cli.output import exit_code_for
from conveyor.cli.remote import _raise_for
from conveyor.errors import ConveyorError


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [(400, 2), (404, 3), (409, 4), (413, 2), (415, 2), (429, 8), (500, 1), (503, 7), (504, 9)],
)
def test_status_maps_to_exit_code_and_keeps_the_servers_message(status: int, exit_code: int) -> None:
    resp = httpx.Response(status, json={"error": "input 'x': expected FP32, got INT64"})
    with pytest.raises(ConveyorError) as info:
        _raise_for(resp, "http://127.0.0.1:1/v2/models/m/infer")
    assert exit_code_for(info.value) == exit_code
    assert f"answered {status}: input 'x': expected FP32, got INT64" in str(info.value)


def test_success_is_not_an_error() -> None:
    _raise_for(httpx.Response(200, json={}), "http://127.0.0.1:1")


def test_a_non_json_error_body_is_still_one_line() -> None:
    with pytest.raises(ConveyorError, match="answered 502: bad gateway"):
        _raise_for(httpx.Response(502, text="bad gateway"), "http://127.0.0.1:1")
