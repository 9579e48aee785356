"""A real browser for the console's tests: Debian's Chromium driven by Playwright.

Playwright's own browser builds cannot be downloaded here, so it drives
/usr/bin/chromium (`executable_path`). Like every real part, a missing browser skips on
a laptop and fails in CI (tests/realparts.py). Screenshots go to
test-artifacts/screenshots/ (gitignored): look at them.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from tests.realparts import missing, require_module

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # the alarm beep must be able to sound on a tab nobody has clicked yet (night duty)
    "--autoplay-policy=no-user-gesture-required",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def launch_chromium() -> Iterator[Any]:
    require_module("playwright", "pip install -e '.[dev]'")
    if not os.path.exists(CHROMIUM):
        missing("chromium", "apt-get install chromium fonts-noto-cjk")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def export_ledger(page: Any) -> list[list[str]]:
    """Click the ledger's CSV export; the downloaded file as a spreadsheet would read it."""
    with page.expect_download() as download:
        page.click("#export-csv")
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "no UTF-8 byte-order mark: Excel would read GBK"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


class AppServer:
    """The console app served by uvicorn on a free loopback port, in a thread of the test."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the console app did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()
