"""The console end to end, in Debian's Chromium: a real `cabinet-agent run` on a simulated
cabinet, a real mosquitto, and `cabinet-central serve` as a child process (its ingest, its
store on SQLite, its command gateway signing with the central key, this web app).

Each test writes the cabinet's scene as a scenario starting *now* at real speed, so the
cabinet's clock, the centre's and the browser's agree (commands expire in real time).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.wire import read_key
from tests.central.cabinet import FakeCabinet
from tests.central_service.rig import CentralRig, wait_until
from tests.central_web.browser import export_ledger, launch_chromium, screenshot
from tests.daemon.agent_process import POLICY, AgentProcess, keygen, sim_config
from tests.support.broker import Broker, free_port

pytestmark = pytest.mark.realpart

DEVICE = "cab-chem-0042"  # the simulated cabinet of tests/daemon/agent_process.py
PASSWORD = "a night on duty"
# accounts of the console, acting as persons of examples/policy.toml
ACCOUNTS = (
    ("lina", "p-1002", "operator"),  # Li Na: a user of the cabinet, on centre duty tonight
    ("wangfang", "p-1003", "keeper"),  # Wang Fang: keeper and safety officer
    ("zhangwei", "p-1001", "keeper"),  # Zhang Wei: keeper
    ("audit", "p-1004", "auditor"),  # the lab's auditor: reads everything, acts on nothing
)
KEEPER_CARD, USER_CARD = "04A1B2C3D4E5F6", "04FFEEDDCCBBAA"  # p-1001, p-1002


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


class Night:
    """The centre serving the console, and one simulated cabinet playing `scene`."""

    def __init__(self, tmp: Path, broker: Broker, scene: list[dict[str, Any]]) -> None:
        cabinet_dir, centre_dir = tmp / "cabinet", tmp / "centre"
        cabinet_dir.mkdir()
        centre_dir.mkdir()
        keygen(cabinet_dir)
        device_key = read_key(cabinet_dir / "state" / "device.key")
        registered = FakeCabinet(device=DEVICE, site="lab", key=device_key)
        self.rig = CentralRig(
            centre_dir, broker.url, f"sqlite:///{centre_dir / 'central.db'}", [registered]
        )
        # the centre takes people's names from the policies it signed (here the TOML source)
        policies = centre_dir / "policies"
        policies.mkdir()
        shutil.copy(POLICY, policies / "policy.toml")
        self.rig.config.write_text(f'policies = "{policies}"\n' + self.rig.config.read_text())
        for login, person, role in ACCOUNTS:
            added = self.rig.cli(
                "user",
                "add",
                login,
                "--person",
                person,
                "--role",
                role,
                "--password-stdin",
                stdin=PASSWORD + "\n",
            )
            assert added.returncode == 0, added.stderr
        self.listen = f"127.0.0.1:{free_port()}"
        self.rig.serve_ready(listen=self.listen)
        wait_until(self._answers, 30, "the console to answer HTTP")
        scenario = cabinet_dir / "scene.jsonl"
        start = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines = [{"start": start}, *scene]
        scenario.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        config = sim_config(
            cabinet_dir, broker.url, heartbeat_s=5, central_pubkey=self.rig.central_pub.to_text()
        )
        self.agent = AgentProcess(config, str(scenario), speed=1, exit_after=None)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def close(self) -> None:
        self.agent.terminate()
        try:
            self.agent.wait(15)
        except subprocess.TimeoutExpired:  # still running after SIGTERM: kill it
            self.agent.kill()
        self.rig.stop_all()

    def record(self, page: Any) -> list[dict[str, Any]]:
        """The cabinet's verified record as the centre serves it (GET /api/events)."""
        answer = page.request.get(f"{self.url}/api/events?device={DEVICE}&limit=1000")
        assert answer.ok, answer.text()
        events: list[dict[str, Any]] = answer.json()
        return events


@pytest.fixture
def night(tmp_path: Path, make_broker: Callable[..., Broker]) -> Iterator[Callable[..., Night]]:
    started: list[Night] = []

    def start(scene: list[dict[str, Any]]) -> Night:
        running = Night(tmp_path, make_broker(tls=False), scene)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    yield context.new_page()
    context.close()


def sign_in(page: Any, night: Night, login: str) -> None:
    page.goto(f"{night.url}/login")
    page.fill('input[name="username"]', login)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_selector("#live-state")


def shown_live(page: Any, card: Any, stored: Callable[[], bool], what: str) -> None:
    """`card` is not on the open page; once the centre has stored what it shows, it is on
    the page within a second, and the page was not reloaded in between."""
    page.wait_for_selector("#live-state.ok")  # the live stream is connected
    assert card.count() == 0, f"{what} was on the page before the cabinet said it"
    page.evaluate("window.sameLoad = true")  # a reload would forget this
    wait_until(stored, 40, f"{what} in the centre's record")
    card.wait_for(timeout=1000)
    assert page.evaluate("window.sameLoad === true"), "the page was reloaded"


def api(page: Any, night: Night, path: str) -> Any:
    answer = page.request.get(f"{night.url}{path}")
    assert answer.ok, answer.text()
    return answer.json()


def test_an_alarm_at_the_cabinet_appears_live_and_its_ack_names_me(page, night):
    running = night(
        [
            {"t": 10, "input": "door", "state": "open"},  # no session: door_forced
            {"t": 11, "input": "door", "state": "closed"},
            {"t": 600, "input": "tick"},
        ]
    )
    sign_in(page, running, "lina")
    page.goto(f"{running.url}/alarms")
    # (the simulated cabinet may also raise clock_unsynced: its clock is not NTP-synced)
    alarm = page.locator(f'[data-alarm^="{DEVICE}/"]', has_text="门被强行打开")
    shown_live(
        page,
        alarm,
        lambda: any(a["kind"] == "door_forced" for a in api(page, running, "/api/alarms")),
        "door_forced",
    )
    alarm_id = alarm.get_attribute("data-alarm").split("/", 1)[1]
    screenshot(page, "e2e-alarm-live")
    alarm.locator('textarea[name="comment"]').fill("值班员已电话通知保管员，门已关好")
    alarm.locator('button[data-action="ack"]').click()
    page.wait_for_selector(".flash", timeout=15_000)
    screenshot(page, "e2e-alarm-acknowledged")
    answer = page.inner_text(".flash")
    assert "柜子已执行" in answer, answer

    def acknowledged() -> list[dict[str, Any]]:
        return [
            e
            for e in running.record(page)
            if e["type"] == "alarm.acknowledged" and e["data"]["alarm"] == alarm_id
        ]

    wait_until(lambda: bool(acknowledged()), 15, "alarm.acknowledged in the cabinet's record")
    assert acknowledged()[0]["data"]["by"] == "p-1002"
    assert acknowledged()[0]["data"]["comment"] == "值班员已电话通知保管员，门已关好"
    # its history (raised, acknowledged by whom and why, cleared) names people by name
    page.goto(f"{running.url}/alarms/{DEVICE}/{alarm_id}")
    wait_until(
        lambda: "Li Na" in page.inner_text(".timeline") or bool(page.reload()),
        15,
        "the acknowledgement in the alarm's history",
    )
    assert "值班员已电话通知保管员" in page.inner_text(".timeline")
    screenshot(page, "e2e-alarm-history")


def test_a_remote_approval_opens_the_simulated_cabinet(page, night):
    running = night(
        [
            {"t": 10, "input": "badge", "reader": "A", "uid": KEEPER_CARD},  # Zhang Wei waits
            {"t": 600, "input": "tick"},
        ]
    )
    sign_in(page, running, "wangfang")
    page.goto(f"{running.url}/approvals")
    waiting = page.locator(f'[data-pending="{DEVICE}/p-1001"]')
    shown_live(
        page,
        waiting,
        lambda: any(p["person"] == "p-1001" for p in api(page, running, "/api/approvals")),
        "Zhang Wei's waiting badge",
    )
    screenshot(page, "e2e-approval-waiting")
    waiting.locator('button[data-action="approve"]').click()
    page.wait_for_selector(".flash", timeout=15_000)
    screenshot(page, "e2e-approval-applied")
    assert "柜子已执行" in page.inner_text(".flash"), page.inner_text(".flash")

    def granted() -> list[dict[str, Any]]:
        return [e for e in running.record(page) if e["type"] == "access.granted"]

    wait_until(lambda: bool(granted()), 15, "access.granted in the cabinet's record")
    assert granted()[0]["data"]["mode"] == "remote"
    first, second = granted()[0]["data"]["persons"]
    assert first == "p-1001"
    assert second == "p-1003"  # [person, by]: the logged-in keeper is the second person
    wait_until(
        lambda: any(e["type"] == "lock.unlocked" for e in running.record(page)),
        15,
        "the lock to open",
    )


def test_two_keepers_resolve_a_discrepancy_and_the_alarm_clears_live(page, night):
    running = night(
        [
            {"t": 10, "input": "weight", "slot": 3, "mg": 670_000},  # 12 g gone, door shut
            {"t": 600, "input": "tick"},
        ]
    )
    sign_in(page, running, "wangfang")  # Wang Fang, keeper: the first person
    page.goto(f"{running.url}/alarms")
    alarm = page.locator(f'[data-alarm^="{DEVICE}/"]', has_text="重量变化无记录")
    shown_live(
        page,
        alarm,
        lambda: any(a["kind"] == "mass_unexplained" for a in api(page, running, "/api/alarms")),
        "mass_unexplained",
    )
    alarm_id = alarm.get_attribute("data-alarm").split("/", 1)[1]
    alarm.locator("details.resolve summary").click()
    alarm.locator('select[name="reason"]').select_option("recount")
    alarm.locator('select[name="second"]').select_option(label="Zhang Wei · p-1001")
    alarm.locator('textarea[name="resolve_comment"]').fill("两人复称，按实际重量入账")
    alarm.locator('input[name="second_login"]').fill("zhangwei")  # Zhang Wei, beside her
    alarm.locator('input[name="second_password"]').fill(PASSWORD)
    screenshot(page, "e2e-alarm-resolve")
    alarm.locator('button[data-action="resolve"]').click()
    page.wait_for_selector(".flash", timeout=15_000)
    assert "柜子已执行" in page.inner_text(".flash"), page.inner_text(".flash")
    page.evaluate("window.sameLoad = true")
    page.locator(f'[data-alarm="{DEVICE}/{alarm_id}"]').wait_for(state="detached")
    assert page.evaluate("window.sameLoad === true"), "the page was reloaded"

    def settled() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        record = running.record(page)
        adjusted = [e["data"] for e in record if e["type"] == "inventory.adjusted"]
        cleared = [
            e["data"]
            for e in record
            if e["type"] == "alarm.cleared" and e["data"]["alarm"] == alarm_id
        ]
        return adjusted, cleared

    wait_until(lambda: all(settled()), 15, "the settlement in the cabinet's record")
    adjusted, cleared = settled()
    assert adjusted[0]["persons"] == ["p-1003", "p-1001"]
    assert (adjusted[0]["alarm"], adjusted[0]["reason"]) == (alarm_id, "recount")
    assert adjusted[0]["delta_mg"] == -12_000
    assert cleared[0]["reason"] == "resolved"
    page.goto(f"{running.url}/alarms/{DEVICE}/{alarm_id}")
    history = page.inner_text(".timeline")
    assert "Wang Fang + Zhang Wei" in history and "两人复称" in history, history
    screenshot(page, "e2e-alarm-resolved-history")


def test_the_ledger_export_holds_the_scripted_withdrawal(page, night):
    running = night(
        [
            {"t": 1, "input": "badge", "reader": "A", "uid": KEEPER_CARD},
            {"t": 2, "input": "badge", "reader": "B", "uid": USER_CARD},
            {"t": 3, "input": "door", "state": "open"},
            {"t": 4, "input": "weight", "slot": 3, "mg": 657_000},  # 25 g of sodium cyanide out
            {"t": 6, "input": "door", "state": "closed"},
            {"t": 600, "input": "tick"},
        ]
    )
    sign_in(page, running, "audit")

    def withdrawals() -> list[dict[str, Any]]:
        return [e for e in running.record(page) if e["type"] == "inventory.withdrawal"]

    wait_until(lambda: bool(withdrawals()), 40, "the withdrawal in the centre's record")
    page.goto(f"{running.url}/ledger")
    table = page.inner_text("table")
    assert "25.000 g" in table and "sodium cyanide" in table and "Zhang Wei + Li Na" in table
    screenshot(page, "e2e-ledger")
    rows = export_ledger(page)
    assert [r[2] for r in rows[1:]] == ["领用"]
    assert rows[1][3:5] == ["c-NaCN-01", "sodium cyanide"] and rows[1][6] == "25.000"
    assert rows[1][8] == "Zhang Wei + Li Na"
    # The day's reconciliation: the books explain the withdrawal, but nobody weighed the
    # stock yet, so it is "not weighed", not a tick; "weigh now" makes the cabinet weigh.
    page.goto(f"{running.url}/daily")
    row = page.inner_text('tr:has-text("c-NaCN-01")')
    assert "未称重" in row and "✓" not in row
    page.goto(f"{running.url}/cabinets/{DEVICE}")
    assert page.locator('button[data-action="weigh"]').count() == 0  # an auditor only reads
    page.context.clear_cookies()
    sign_in(page, running, "lina")  # the operator on duty
    page.goto(f"{running.url}/cabinets/{DEVICE}")
    page.click('button[data-action="weigh"]')
    page.wait_for_selector("text=柜子已执行")
    wait_until(
        lambda: any(e["type"] == "inventory.snapshot" for e in running.record(page)),
        20,
        "the snapshot in the centre's record",
    )
    page.goto(f"{running.url}/daily")
    row = page.inner_text('tr:has-text("c-NaCN-01")')
    assert "✓" in row and "未称重" not in row
    assert row.count("475.000 g") == 2, row  # the closing book, and the scale agreeing
    screenshot(page, "e2e-daily-weighed")
