"""A TCP proxy that cuts a connection at the worst moment: right after forwarding a chosen
command to Redis, before its answer can come back (a network that fails mid-operation)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttingProxy:
    """Relays 127.0.0.1:``port`` to ``upstream``; the first client packet that contains
    ``trigger`` is forwarded and then both sides of that connection are closed."""

    def __init__(self, upstream: tuple[str, int], trigger: bytes) -> None:
        self.upstream = upstream
        self.trigger = trigger
        self.cuts = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._relay, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, False),
                             daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if outbound and not self.cuts and self.trigger in chunk:
                    self.cuts += 1
                    for end in (source, sink):
                        end.shutdown(socket.SHUT_RDWR)
                        end.close()
                    return
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closing.set()
        self._server.close()
