"""Regenerate docs/console/*.png from the demo: a real scene, a real centre, a real browser.

    .venv/bin/python scripts/console_screenshots.py

Runs scripts/demo.sh with DEMO_HOLD=1, signs in to the console it prints with Debian's
Chromium (Playwright), photographs the fleet, the alarms, the cabinet, the ledger and the
daily reconciliation, then lets the demo end. Needs what the demo and the browser tests
need (mosquitto, chromium, fonts-noto-cjk, the dev extra).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "console"
DEVICE = "cab-chem-0042"
PAGES = {
    "fleet": "/",
    "alarms": "/alarms",
    "cabinet": f"/cabinets/{DEVICE}",
    "ledger": "/ledger",
    "daily": "/daily",
}


def main() -> int:
    demo = subprocess.Popen(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env={**os.environ, "DEMO_HOLD": "1", "DEMO_SPEED": os.environ.get("DEMO_SPEED", "20")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert demo.stdin is not None and demo.stdout is not None
    console = None
    for line in demo.stdout:
        sys.stdout.write(line)
        found = re.search(r"console stays up on (\S+)/ ", line)
        if found:
            console = found.group(1)
            break
    if console is None:
        print("the demo ended before its console was up", file=sys.stderr)
        return 1
    try:
        shoot(console)
    finally:
        demo.stdin.write("\n")
        demo.stdin.close()
        demo.wait(60)
    return 0


def shoot(console: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        page.goto(f"{console}/login")
        page.fill('input[name="username"]', "wang")
        page.fill('input[name="password"]', "cabinet-demo")
        page.click('button[type="submit"]')
        page.wait_for_selector(f'tr[data-key="{DEVICE}"]')
        for name, path in PAGES.items():
            page.goto(console + path)
            page.wait_for_load_state("networkidle")
            OUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
            print(f"   {OUT / name}.png")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
