"""uvicorn's httptools protocol, with each response leaving in one write.

Why: uvicorn writes a response's head when the app sends ``http.response.start`` and its body
when the app sends ``http.response.body``: two ``send`` system calls per response, and on
loopback or a LAN two TCP segments the client must read apart. In a profile of the gateway
under a 2x spike those two writes were a seventh of its CPU, and every core-second the edge
spends is one the workers on the same host lose. Writes made in one turn of the event loop are
joined and written once at the end of that turn; nothing else about uvicorn changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes in one loop turn leave as one ``write`` of the real one.

    Order is kept: every write of the connection goes through here, and ``close`` first writes
    what is pending (the real transport then sends it before it closes, as it always does).
    Everything else is the real transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the end of this loop turn."""
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write what is queued, at once."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Write what is queued, then close."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `CoalescingTransport`; pass as ``http=`` to
    ``uvicorn.run``. Flow control keeps the real transport: pausing reads is not a write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
