"""The gRPC error table agrees with the HTTP one and tells overloaded clients when to come back."""

from __future__ import annotations

import grpc

from conveyor.errors import InvalidInput, NotFound, Overloaded, PayloadTooLarge, Unavailable
from conveyor.frontend.grpc_errors import STATUS_BY_CODE as GRPC
from conveyor.frontend.grpc_errors import grpc_status_for, retry_metadata
from conveyor.frontend.http_errors import STATUS_BY_CODE as HTTP


def test_every_error_code_has_a_grpc_status() -> None:
    assert set(GRPC) == set(HTTP)


def test_client_errors_are_client_statuses_on_both_transports() -> None:
    server_side = {grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNAVAILABLE}
    # A full disk is the server's state on both: HTTP 507, and gRPC's RESOURCE_EXHAUSTED, which the gRPC guide
    # gives both to a client's quota and to "the entire file system is out of space".
    assert (HTTP["disk_full"], GRPC["disk_full"]) == (507, grpc.StatusCode.RESOURCE_EXHAUSTED)
    for code, http in HTTP.items():
        if code == "disk_full":
            continue
        assert (http >= 500 and http != 504) == (GRPC[code] in server_side), code


def test_bad_input_is_invalid_argument_and_unknown_model_not_found() -> None:
    assert grpc_status_for(InvalidInput("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status_for(PayloadTooLarge("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status_for(NotFound("x")) == grpc.StatusCode.NOT_FOUND


def test_backpressure_carries_retry_after_in_whole_seconds() -> None:
    assert grpc_status_for(Overloaded("full", retry_after_s=2.2)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_metadata(Overloaded("full", retry_after_s=2.2)) == (("retry-after", "3"),)
    assert retry_metadata(Unavailable("down")) == (("retry-after", "1"),)
    assert retry_metadata(InvalidInput("bad")) == ()
