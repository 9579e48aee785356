"""Regenerate docs/console/*.png from the demo: a real scene, a real centre, a real browser.

    .venv/bin/python scripts/console_screenshots.py

Runs scripts/demo.sh with DEMO_HOLD=1 on the demo's scene followed by two things the
people on duty must see: a discrepancy of the books (12 g gone with the door shut) and
a keeper's badge waiting for a remote second person. The scene is dated to end about
now, so the waiting badge has not expired and the daily page's day is today. It signs
in to the console the demo prints with Debian's Chromium (Playwright), photographs the
sign-in page and every main page, among them the alarms page with the two-person
resolve form filled in (not sent), then lets the demo end. Needs what the demo and the
browser tests need (mosquitto, chromium, fonts-noto-cjk, the dev extra).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "console"
DEVICE = "cab-chem-0042"
SPEED = 20
KEEPER_CARD = "04A1B2C3D4E5F6"  # Zhang Wei
# after the demo's scene (which ends at t=280): slot 3 loses 12 g with nobody at the
# cabinet, then Zhang Wei badges alone and waits for a remote second person (30 s)
EXTRA = [
    {"t": 290, "input": "weight", "slot": 3, "mg": 645_000},
    {"t": 360, "input": "badge", "reader": "A", "uid": KEEPER_CARD},
    {"t": 370, "input": "tick"},
]
# the badge is seen at scene time 360, dated 60 s from now: it waits until ~90 s from now
BADGE_AT_S = 360
BADGE_AHEAD_S = 60
PAGES = {
    "fleet": "/",
    "cabinet": f"/cabinets/{DEVICE}",
    "ledger": "/ledger",
    "daily": "/daily",
}


def scene(into: Path) -> Path:
    lines = (ROOT / "examples" / "scenarios" / "demo.jsonl").read_text().splitlines()
    steps = [json.loads(line) for line in lines if line.strip()]
    start_s = time.time() + BADGE_AHEAD_S - BADGE_AT_S
    start = datetime.fromtimestamp(start_s, UTC).isoformat(timespec="milliseconds")
    body = [s for s in steps if "start" not in s and s.get("input") != "tick"]
    path = into / "screenshots.jsonl"
    every = [{"start": start.replace("+00:00", "Z")}, *body, *EXTRA]
    path.write_text("\n".join(json.dumps(s) for s in every) + "\n")
    return path


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        demo = subprocess.Popen(
            ["bash", "scripts/demo.sh"],
            cwd=ROOT,
            env={
                **os.environ,
                "DEMO_HOLD": "1",
                "DEMO_SPEED": str(SPEED),
                "DEMO_SCENARIO": str(scene(Path(tmp))),
            },
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


def save(page: Any, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print(f"   {OUT / name}.png")


def shoot(console: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1200, "height": 700}, locale="zh-CN")
        page.goto(f"{console}/login")
        save(page, "login")
        page.fill('input[name="username"]', "wang")
        page.fill('input[name="password"]', "cabinet-demo")
        page.click('button[type="submit"]')
        page.wait_for_selector(f'tr[data-key="{DEVICE}"]')
        # first, while Zhang Wei's badge is still waiting
        page.goto(f"{console}/approvals")
        page.wait_for_selector(f'[data-pending="{DEVICE}/p-1001"]')
        page.wait_for_selector("#live-state.ok")
        save(page, "approvals")
        for name, path in PAGES.items():
            page.goto(console + path)
            page.wait_for_selector("#live-state.ok")
            save(page, name)
        alarms = page.request.get(f"{console}/api/alarms?state=all").json()
        voc = next(a for a in alarms if a["kind"].startswith("voc"))
        page.goto(f"{console}/alarms/{DEVICE}/{voc['alarm']}")
        page.wait_for_selector("#live-state.ok")
        save(page, "alarm-history")
        page.goto(f"{console}/alarms")
        page.wait_for_selector("#live-state.ok")
        mass = page.locator(f'[data-alarm^="{DEVICE}/"]', has_text="重量变化无记录")
        mass.locator("details.resolve summary").click()
        mass.locator('select[name="reason"]').select_option("recount")
        mass.locator('select[name="second"]').select_option("p-1001")
        mass.locator('input[name="second_login"]').fill("zhangwei")
        mass.locator('input[name="second_password"]').fill("not sent")
        mass.locator('textarea[name="resolve_comment"]').fill("两人复称，按实际重量入账")
        save(page, "alarms")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
