"""The dashboard page and Flower's Broker page, in real headless Chromium.

A queue's worker is stopped and jobs pile up: the page shows the depth rising; the worker comes
back: the page shows it falling to zero. Flower, loaded with embedq's app, lists the same queue
with its waiting messages and consumers. Barriers only: Playwright waits on the page's own text,
processes on their log lines. Chromium is Debian's package (`.ci/run` installs it); Playwright
drives it through ``executable_path`` and never downloads a browser.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from embedq.ops.redis_server import free_port
from tests.support import WorkerProcess, make_client, stop_all, wait_until, worker_env

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
QUEUE = "embed.hashing.fp32"
DEPTH = f'#queues tr[data-queue="{QUEUE}"] td[data-field="depth"]'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def started(redis_server, hashing_config) -> Iterator[list[WorkerProcess]]:
    processes: list[WorkerProcess] = []
    yield processes
    stop_all(processes)


def start(started, redis_server, hashing_config, *command: str) -> WorkerProcess:
    process = WorkerProcess([sys.executable, *command],
                            worker_env(redis_server.url, hashing_config))
    started.append(process)
    return process


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def depth_above(page: Page, count: int) -> int:
    """Wait until the page shows more than ``count`` waiting messages; return what it shows."""
    page.wait_for_function(
        f"() => Number(document.querySelector('{DEPTH}')?.textContent) > {count}",
        timeout=30_000)
    return int(page.text_content(DEPTH) or 0)


def test_page_shows_a_stopped_queue_rising_and_a_running_one_falling(
        redis_server, hashing_config, start_worker, started, browser):
    port = free_port()
    start(started, redis_server, hashing_config, "-m", "embedq.cli", "dashboard",
          "--port", str(port))
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=60)
    client = make_client(redis_server.url, hashing_config)
    worker = start_worker("hashing", "fp32", hashing_config, "-c", "1")
    wait_until(lambda: client.route_status("fast").queue.consumers == 1, timeout=120)
    worker.stop()
    wait_until(lambda: client.route_status("fast").queue.consumers == 0, timeout=30)

    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    # The producer may coalesce concurrent submits into fewer messages: depth counts messages.
    jobs = [client.submit([f"first {i}"], "fast") for i in range(10)]
    first = depth_above(page, 0)
    jobs += [client.submit([f"second {i}"], "fast") for i in range(15)]
    depth_above(page, first)
    consumers = page.text_content(f'#queues tr[data-queue="{QUEUE}"] td[data-field="consumers"]')
    assert consumers == "0"

    restarted = start_worker("hashing", "fp32", hashing_config, "-c", "1")
    page.wait_for_function(f"() => document.querySelector('{DEPTH}')?.textContent === '0'",
                           timeout=60_000)
    assert all(job.get(timeout=60).shape == (1, 64) for job in jobs)
    restarted.stop()


def broker_row(page: Page, port: int) -> list[str]:
    page.goto(f"http://127.0.0.1:{port}/broker")
    return page.locator("#queue-table tbody tr", has_text=QUEUE).locator("td").all_text_contents()


def test_flower_broker_page_shows_a_stopped_queue_growing(
        redis_server, hashing_config, started, browser):
    port = free_port()
    start(started, redis_server, hashing_config, "-m", "celery", "-A",
          "embedq.ops.flower_app", "flower", "--address=127.0.0.1", f"--port={port}")
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthcheck"), timeout=60)
    client = make_client(redis_server.url, hashing_config)
    wait_until(lambda: client.route_status("fast").queue.consumers == 0, timeout=30)
    page = browser.new_page()
    before = int(broker_row(page, port)[1])
    depth = client.route_status("fast").queue.depth
    for i in range(3):
        client.submit([f"waiting for a worker {i}"], "fast")
    # submit returns before the sender thread pushes: wait until the messages are on the queue
    wait_until(lambda: client.route_status("fast").queue.depth > depth, timeout=30)
    cells = broker_row(page, port)
    assert cells[0] == QUEUE
    assert int(cells[1]) > before        # messages (waiting + unacked); submits may coalesce
    assert cells[4] == "0"               # consumers: its worker is down
