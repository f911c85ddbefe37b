"""uvicorn's httptools protocol with a deadline on every request head, so no connection idles forever.

uvicorn arms its keep-alive timer only after a response, and disarms it on the first byte that arrives: a
connection that never sends a request, or sends half a request line and stops, stays open for good (one
file descriptor and one protocol object each). Here a connection must deliver a complete request head
within ``timeout_keep_alive`` of opening and of each response, or it is closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DeadlineHttpProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()  # from here the body reader's deadlines apply
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_deadline_passed)

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        # A pipelined request whose head already arrived is being served: not idle.
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy and not self.pipeline and not self.transport.is_closing():
            self.transport.close()
