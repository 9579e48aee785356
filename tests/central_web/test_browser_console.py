"""The console in a real browser (Debian's Chromium), served by uvicorn over the real store.

The cabinet here is a signing stand-in (tests/central/cabinet.py) whose envelopes go
through the ingest's verification into the store; the whole chain with a real agent,
broker and `cabinet-central serve` is test_browser_end_to_end.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.store import Store
from central.web.app import create_app
from central.web.settings import WebSettings
from tests.central.cabinet import FakeCabinet
from tests.central_service.conftest import Feed
from tests.central_web.browser import AppServer, export_ledger, launch_chromium, screenshot
from tests.central_web.conftest import SECRET
from tests.central_web.record import RecordingGateway
from tests.central_web.test_api_over_the_store import a_withdrawal_and_an_alarm

PASSWORD = "night duty password"
DEVICE = "cab-chem-0042"
# the cabinet's policy as the centre keeps it: names, and the roles that decide who may
# be the second person of a resolve (the form offers them by name)
POLICY = {
    "version": 3,
    "person": [
        {"id": "p-1001", "name": "张伟", "roles": ["keeper"]},
        {"id": "p-1002", "name": "李娜", "roles": ["user"]},
        {"id": "p-1003", "name": "李安全", "roles": ["keeper", "safety_officer"]},
    ],
    "container": [{"id": "c-NaCN-01", "name": "氰化钠", "class": "highly_toxic"}],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


class Console:
    def __init__(self, tmp: Path) -> None:
        self.store = Store.open(f"sqlite:///{tmp / 'central.db'}")
        self.store.migrate()
        self.cabinet = FakeCabinet(device=DEVICE)
        self.feed = Feed(self.store, self.cabinet)
        self.store.set_policy_names(DEVICE, POLICY)
        a_withdrawal_and_an_alarm(self.cabinet)
        self.feed.send(self.cabinet)
        for login, person, role in (
            ("wang", "p-3001", "operator"),
            ("zhang", "p-1001", "keeper"),
            ("li", "p-1003", "safety_officer"),
            ("audit", "p-4001", "auditor"),
        ):
            self.store.add_user(login, person, role, PASSWORD)
        self.gateway = RecordingGateway()
        app = create_app(self.store, self.gateway, WebSettings(secret_key=SECRET))
        self.server = AppServer(app).start()

    def emit(self, type: str, data: dict[str, Any]) -> None:
        """The cabinet says something; it reaches the store as the ingest would store it."""
        env = self.cabinet.emit(type, data)
        self.feed.send(self.cabinet, env)

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    running = Console(tmp_path)
    yield running
    running.close()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    # the page closes (and with it its live stream) before the console's server stops
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    page = context.new_page()
    yield page
    context.close()


def sign_in(page: Any, console: Console, login: str, password: str = PASSWORD) -> None:
    page.goto(f"{console.server.url}/login")
    page.fill('input[name="username"]', login)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')


def test_a_failed_sign_in_is_said_and_the_right_one_shows_every_cabinet(page, console):
    sign_in(page, console, "wang", "wrong password")
    page.wait_for_selector("#login-failed")
    assert "用户名或密码错误" in page.inner_text("#login-failed")
    screenshot(page, "login-failed")
    sign_in(page, console, "wang")
    page.wait_for_selector(f'tr[data-key="{DEVICE}"]')
    row = page.inner_text(f'tr[data-key="{DEVICE}"]')
    assert "在线" in row or "离线" in row
    screenshot(page, "fleet")


def test_a_new_alarm_appears_within_a_second_with_a_sound(page, console):
    sign_in(page, console, "wang")
    page.goto(f"{console.server.url}/alarms")
    page.wait_for_selector(f'[data-alarm="{DEVICE}/A1-1"]')
    page.wait_for_selector("#live-state.ok")  # the live stream is connected
    raised = time.monotonic()
    console.emit("alarm.raised", {"alarm": "A1-2", "kind": "mass_unexplained"})
    page.wait_for_selector(f'[data-alarm="{DEVICE}/A1-2"]', timeout=1000)
    seen_after_s = time.monotonic() - raised
    assert seen_after_s < 1.0
    assert page.evaluate("window.consoleBeeps") >= 1
    assert "重量变化无记录" in page.inner_text(f'[data-alarm="{DEVICE}/A1-2"]')
    screenshot(page, "alarms-live")


def test_an_alarm_raised_while_the_page_connects_is_shown_without_a_reload(page, console):
    sign_in(page, console, "wang")
    page.wait_for_selector("#live-state.ok")
    held: list[Any] = []
    page.route("**/live", lambda route: held.append(route))  # held until the alarm is stored
    page.goto(f"{console.server.url}/alarms")
    page.wait_for_selector(f'[data-alarm="{DEVICE}/A1-1"]')
    while not held:  # the page asked for its live stream: it is rendered and waiting
        page.wait_for_timeout(10)
    console.emit("alarm.raised", {"alarm": "A1-5", "kind": "leak"})
    held[0].continue_()
    page.wait_for_selector("#live-state.ok")
    page.wait_for_selector(f'[data-alarm="{DEVICE}/A1-5"]', timeout=1000)
    assert page.evaluate("window.consoleBeeps") == 1


def test_a_muted_console_still_shows_a_new_alarm_but_stays_silent(page, console):
    sign_in(page, console, "wang")
    page.goto(f"{console.server.url}/alarms")
    page.wait_for_selector("#live-state.ok")
    page.click("#mute")
    assert "静音" in page.inner_text("#mute")
    console.emit("alarm.raised", {"alarm": "A1-3", "kind": "leak"})
    page.wait_for_selector(f'[data-alarm="{DEVICE}/A1-3"]', timeout=1000)
    assert page.evaluate("[window.consoleBeeps, window.consoleSounds]") == [1, 0]
    page.reload()  # muting is remembered by this browser
    assert "静音" in page.inner_text("#mute")


def test_a_keeper_resolves_a_discrepancy_once_the_second_person_signs_in_to_it(page, console):
    console.emit("alarm.raised", {"alarm": "A1-4", "kind": "mass_unexplained", "slot": 3})
    sign_in(page, console, "zhang")
    page.goto(f"{console.server.url}/alarms")
    alarm = page.locator(f'[data-alarm="{DEVICE}/A1-4"]')
    alarm.locator("details.resolve summary").click()
    alarm.locator('select[name="reason"]').select_option("evaporation")
    assert alarm.locator('select[name="second"] option').all_inner_texts()[1:] == [
        "李安全 · p-1003"  # only the other qualified people: not a user, not me
    ]
    alarm.locator('select[name="second"]').select_option(label="李安全 · p-1003")
    alarm.locator('textarea[name="resolve_comment"]').fill("夏季挥发，复称确认")
    # Li, at the keeper's side, types her own username and password
    alarm.locator('input[name="second_login"]').fill("li")
    alarm.locator('input[name="second_password"]').fill("not her password")
    alarm.locator('button[data-action="resolve"]').click()
    page.wait_for_selector(".flash.bad")
    assert "第二人的用户名或密码错误" in page.inner_text(".flash")
    assert console.gateway.sent == []  # nothing signed, nothing sent
    alarm.locator("details.resolve summary").click()
    alarm.locator('select[name="reason"]').select_option("evaporation")
    alarm.locator('select[name="second"]').select_option(label="李安全 · p-1003")
    alarm.locator('textarea[name="resolve_comment"]').fill("夏季挥发，复称确认")
    alarm.locator('input[name="second_login"]').fill("li")
    alarm.locator('input[name="second_password"]').fill(PASSWORD)
    screenshot(page, "alarm-resolve")
    alarm.locator('button[data-action="resolve"]').click()
    page.wait_for_selector(".flash.good")
    assert console.gateway.sent[-1]["name"] == "resolve"
    assert console.gateway.sent[-1]["args"] == {
        "alarm": "A1-4",
        "reason": "evaporation",
        "persons": ["p-1001", "p-1003"],
        "comment": "夏季挥发，复称确认",
    }


def test_a_keeper_approves_a_waiting_badge_as_the_second_person(page, console):
    console.emit(
        "access.pending",
        {"person": "p-1002", "reader": "B", "expires_at_ms": int(time.time() * 1000) + 60_000},
    )
    sign_in(page, console, "zhang")
    page.goto(f"{console.server.url}/approvals")
    waiting = page.locator(f'[data-pending="{DEVICE}/p-1002"]')
    assert "李娜" in waiting.inner_text()
    waiting.locator('button[data-action="approve"]').click()
    page.wait_for_selector(".flash.good")
    sent = console.gateway.sent[-1]
    assert (sent["name"], sent["args"], sent["by"]) == ("approve", {"person": "p-1002"}, "p-1001")


def test_a_waiting_badge_left_alone_shows_expired_and_can_no_longer_be_approved(page, console):
    console.emit(
        "access.pending",
        {"person": "p-1002", "reader": "B", "expires_at_ms": int(time.time() * 1000) + 2_500},
    )
    sign_in(page, console, "zhang")
    page.goto(f"{console.server.url}/approvals")
    waiting = page.locator(f'[data-pending="{DEVICE}/p-1002"]')
    assert "秒后失效" in waiting.inner_text()
    page.wait_for_selector(f'[data-pending="{DEVICE}/p-1002"].expired', timeout=5_000)
    assert "已过期" in waiting.inner_text() and "秒后失效" not in waiting.inner_text()
    assert waiting.locator('button[data-action="approve"]').is_disabled()
    screenshot(page, "approval-expired")
    # the next change of the record refreshes the page, and the expired request is gone
    console.emit("alarm.raised", {"alarm": "A1-6", "kind": "leak"})
    waiting.wait_for(state="detached", timeout=2_000)
    assert console.gateway.sent == []


def test_acknowledging_with_a_chinese_comment_signs_it_in_my_name(page, console):
    sign_in(page, console, "wang")
    page.goto(f"{console.server.url}/alarms")
    alarm = page.locator(f'[data-alarm="{DEVICE}/A1-1"]')
    alarm.locator('textarea[name="comment"]').fill("已到现场，门已关好")
    alarm.locator('button[data-action="ack"]').click()
    page.wait_for_selector(".flash.good")
    assert console.gateway.sent[-1]["name"] == "ack"
    assert console.gateway.sent[-1]["args"] == {"alarm": "A1-1", "comment": "已到现场，门已关好"}
    assert console.gateway.sent[-1]["by"] == "p-3001"


def test_an_auditor_sees_the_alarm_but_cannot_acknowledge(page, console):
    sign_in(page, console, "audit")
    page.goto(f"{console.server.url}/alarms")
    alarm = page.locator(f'[data-alarm="{DEVICE}/A1-1"]')
    alarm.wait_for()
    assert alarm.locator('button[data-action="ack"]').count() == 0
    answer = page.request.post(
        f"{console.server.url}/api/commands/{DEVICE}/ack",
        data={"alarm": "A1-1"},
        headers={"X-CSRF-Token": page.get_attribute('meta[name="csrf-token"]', "content")},
    )
    assert answer.status == 403
    assert console.gateway.sent == []


def test_the_ledger_export_downloads_the_withdrawal_in_chinese(page, console):
    sign_in(page, console, "zhang")
    page.goto(f"{console.server.url}/ledger?since=2026-11-22&until=2026-11-22")
    assert "12.500 g" in page.inner_text("table")
    screenshot(page, "ledger")
    rows = export_ledger(page)
    assert any(r[2] == "领用" and r[4] == "氰化钠" and r[6] == "12.500" for r in rows[1:])


def test_the_main_pages_render_for_people_to_look_at(page, console):
    console.emit(
        "inventory.snapshot",
        {"slots": [{"slot": 3, "container": "c-NaCN-01", "mass_mg": 487_400, "book_mg": 487_500}]},
    )
    console.emit(
        "access.pending",
        {"person": "p-1002", "reader": "B", "expires_at_ms": int(time.time() * 1000) + 60_000},
    )
    sign_in(page, console, "zhang")
    for path, name in (
        (f"/cabinets/{DEVICE}", "cabinet"),
        ("/approvals", "approvals"),
        ("/daily?day=2026-11-22", "daily"),
        (f"/alarms/{DEVICE}/A1-1", "alarm-history"),
    ):
        page.goto(console.server.url + path)
        screenshot(page, name)
    page.goto(f"{console.server.url}/lang/en?next=/alarms")
    page.wait_for_selector("text=Open alarms")
    screenshot(page, "alarms-en")
    page.emulate_media(media="print")
    page.goto(f"{console.server.url}/daily?day=2026-11-22")
    screenshot(page, "daily-print")
