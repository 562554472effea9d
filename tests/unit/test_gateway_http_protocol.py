"""The gateway's HTTP protocol: uvicorn's own, with each response leaving in one write.

uvicorn's protocol is driven here as the event loop drives it (``connection_made``, then the
request's bytes), over a transport that records its writes: no socket, so what is counted is
exactly what would reach the kernel as ``send`` calls.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from embedq.gateway.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Records each write; closes when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        assert not self.closed, "a write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _serve(protocol_class: type[HttpToolsProtocol], requests: bytes) -> RecordingTransport:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def go() -> RecordingTransport:
        config = Config(Starlette(routes=[Route("/", hello)]), log_config=None,
                        access_log=False)
        protocol = protocol_class(config, ServerState(), app_state={})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(requests)
        for _ in range(50):  # the app's task, then the writes at the end of their loop turn
            await asyncio.sleep(0)
        return transport

    return asyncio.run(go())


REQUEST = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"


def test_each_response_leaves_in_one_write_where_uvicorn_makes_two() -> None:
    plain = _serve(HttpToolsProtocol, REQUEST * 3)
    joined = _serve(CoalescingHttpToolsProtocol, REQUEST * 3)
    assert len(plain.writes) == 6  # head and body of each of the three responses
    assert len(joined.writes) == 3
    assert b"".join(joined.writes) == b"".join(plain.writes)
    assert all(write.endswith(b"hello") for write in joined.writes)


def test_close_writes_what_is_pending_first_and_a_closed_peer_gets_nothing() -> None:
    async def go() -> tuple[RecordingTransport, RecordingTransport]:
        loop = asyncio.get_running_loop()
        open_one, gone = RecordingTransport(), RecordingTransport()
        joined = CoalescingTransport(open_one, loop)
        joined.write(b"head ")
        joined.write(b"body")
        joined.close()  # a response with "connection: close" ends so
        lost = CoalescingTransport(gone, loop)
        lost.write(b"late")
        gone.close()  # the client went away before the loop turn ended
        await asyncio.sleep(0)
        return open_one, gone

    open_one, gone = asyncio.run(go())
    assert open_one.writes == [b"head body"]
    assert open_one.closed
    assert gone.writes == []
