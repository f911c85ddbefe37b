"""`conveyor up`'s own clients (health checks, the gateway following the control plane, `up -f`) reach a
stack bound to every interface through loopback, and its gateway gets the stack's token."""

from __future__ import annotations

import pytest

from conveyor.control.supervisor import Stack


@pytest.mark.parametrize(
    ("host", "reach"),
    [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("127.0.0.1", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")],
)
def test_a_wildcard_address_is_reached_through_loopback(host: str, reach: str) -> None:
    stack = Stack(host=host, api_port=8000, port=8080, grpc_port=None)
    assert stack.api_url == f"http://{reach}:8000" and stack.gateway_url == f"http://{reach}:8080"
    assert stack.gateway.args[stack.gateway.args.index("--control-plane") + 1] == stack.api_url
    assert stack.control.args[stack.control.args.index("--host") + 1] == host  # binds what was asked


def test_the_gateway_is_started_with_the_stacks_token(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack(host="127.0.0.1", api_port=8000, port=8080, grpc_port=None, token=lambda: "cvy_t")
    spawned: list[dict[str, str] | None] = []
    monkeypatch.setattr("conveyor.control.supervisor.check_ports_free", lambda *a: None)
    monkeypatch.setattr("conveyor.control.supervisor.wait_healthy", lambda *a, **k: None)
    for child in (stack.control, stack.gateway):
        monkeypatch.setattr(child, "spawn", lambda c=child: spawned.append(c.env))
    stack.start()
    assert spawned[0] is None  # the control plane: this process's environment
    assert spawned[1] is not None and spawned[1]["CONVEYOR_TOKEN"] == "cvy_t"
