"""`embedq up`: a private Redis, the workers, Flower and the dashboard in the foreground;
SIGTERM stops all."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from embedq.ops.redis_server import free_port
from tests.support import make_client


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _healthy(url: str, deadline: float, answer: bytes) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.read() == answer
        except OSError:
            time.sleep(0.1)  # polling a condition with a deadline, not a fixed sleep
    return False


def _gateway_embeds(port: int, deadline: float) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/embeddings",
                                     data=b'{"input": "hello from up", "model": "fast"}')
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return len(json.loads(r.read())["data"][0]["embedding"]) == 64
        except OSError:
            time.sleep(0.1)  # polling a condition with a deadline, not a fixed sleep
    return False


class _Lines:
    """Drains a pipe on a thread (so the children never block) and finds the ready line."""

    def __init__(self, stream) -> None:
        self.url: str | None = None
        self.dashboard: str | None = None
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=30)

    def _read(self, stream) -> None:
        with stream:
            self._read_lines(stream)
        self.ready.set()

    def _read_lines(self, stream) -> None:
        for line in stream:
            if found := re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line):
                self.dashboard = found.group(1)
            if self.url is None and (match := re.search(r"EMBEDQ_REDIS_URL=(redis://\S+)", line)):
                self.url = match.group(1)
                self.ready.set()


def _start_up(config, *args: str) -> tuple[subprocess.Popen, _Lines]:
    """`embedq up ARGS` on the test config, its stderr read on a thread."""
    env = {**os.environ, "EMBEDQ_CONFIG_DIR": str(config), "EMBEDQ_LOG_FORMAT": "json"}
    env.pop("EMBEDQ_REDIS_URL", None)
    up = subprocess.Popen([sys.executable, "-m", "embedq.cli", "up", *args], env=env,
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    return up, _Lines(up.stderr)


def test_up_serves_then_stops_everything(hashing_config):
    flower_port, dashboard_port, gateway_port = free_port(), free_port(), free_port()
    up, lines = _start_up(hashing_config, "--flower-port", str(flower_port), "-c", "1",
                          "--dashboard-port", str(dashboard_port), "--gateway-port",
                          str(gateway_port))
    try:
        assert lines.ready.wait(120), "embedq up never reported ready"
        assert lines.url, "embedq up exited before it was ready"
        client = make_client(lines.url, hashing_config)
        assert client.embed(["hello from up"], "fast", timeout=60).shape == (1, 64)
        del client
        gc.collect()
        redis_port = int(lines.url.rsplit(":", 1)[1].split("/")[0])
        assert _listening(redis_port)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        lines.join()
    assert up.returncode == 0
    assert not _listening(redis_port)
    assert not _listening(flower_port)
    assert not _listening(gateway_port)


def test_up_autoscale_serves_every_queue_then_stops_its_workers(hashing_config):
    import psutil

    up, lines = _start_up(hashing_config, "--autoscale", "--cores", "2", "--no-flower",
                          "--dashboard-port", "0", "--no-gateway")
    try:
        assert lines.ready.wait(120), "embedq up --autoscale never reported ready"
        assert lines.url, "embedq up exited before it was ready"
        client = make_client(lines.url, hashing_config)
        assert client.embed(["hello from an autoscaled up"], "fast", timeout=60).shape == (1, 64)
        client.close()
        descendants = psutil.Process(up.pid).children(recursive=True)
        assert any("autoscale" in " ".join(p.cmdline()) for p in descendants)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=90)
        lines.join()
    assert up.returncode == 0
    assert not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
