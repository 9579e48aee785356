"""The console's pages in process: sign-in, sessions that expire, CSRF, roles, language,
local time, grams and names."""

from __future__ import annotations

import dataclasses
import datetime
import re
import time

import pytest
from itsdangerous import TimestampSigner

from central.store.records import DailyRow
from tests.central_web.conftest import DEVICE, PASSWORD, SECRET, csrf_of, sign_in

PAGES = [
    "/",
    "/alarms",
    f"/alarms/{DEVICE}/A3-1",
    f"/cabinets/{DEVICE}",
    "/approvals",
    "/ledger",
    "/daily",
    "/quarantine",
]


def test_the_sign_in_form_has_the_stable_inputs(make_client):
    html = make_client().get("/login").text
    assert 'name="username"' in html and 'name="password"' in html
    assert "登录" in html


def test_a_failed_sign_in_says_so_and_signs_nobody_in(make_client):
    client = make_client()
    answer = sign_in(client, "wang", "wrong")
    assert answer.status_code == 401
    assert "用户名或密码错误" in answer.text
    assert client.get("/", follow_redirects=False).status_code == 303


def test_signing_in_leads_to_the_page_asked_for(make_client):
    client = make_client()
    first = client.get("/ledger", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/ledger"
    assert sign_in(client, "wang", PASSWORD, then="/ledger").headers["location"] == "/ledger"


def test_sign_in_never_redirects_to_another_site(make_client):
    answer = sign_in(make_client(), "wang", PASSWORD, then="//evil.example/")
    assert answer.headers["location"] == "/"


def test_sign_in_without_the_forms_csrf_token_is_refused(make_client):
    client = make_client()
    client.get("/login")
    answer = client.post("/login", data={"username": "wang", "password": PASSWORD})
    assert answer.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_sign_in(make_client, path):
    answer = make_client().get(path, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_every_role(make_client, path):
    for login in ("wang", "zhang", "audit"):
        answer = make_client(login).get(path)
        assert answer.status_code == 200, (login, path, answer.text[:300])


def test_a_session_older_than_the_idle_limit_is_signed_out(make_client):
    client = make_client("wang")
    cookie = client.cookies["cabinet_session"]
    payload = cookie.split(".")[0]

    class NineHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 9 * 3600

    stale = NineHoursAgo(SECRET).sign(payload).decode()
    client.cookies.clear()
    client.cookies.set("cabinet_session", stale)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_signing_out_needs_the_csrf_token_and_ends_the_session(make_client):
    client = make_client("wang")
    assert client.post("/logout", data={}).status_code == 403
    token = csrf_of(client.get("/").text)
    client.post("/logout", data={"csrf": token})
    assert client.get("/", follow_redirects=False).status_code == 303


def test_fleet_shows_every_cabinet_online_or_offline_with_backlog(make_client):
    html = make_client("wang").get("/").text
    assert DEVICE in html and "cab-bio-0007" in html
    assert "在线" in html and "离线" in html
    assert "2026-03-01 09:30:00" in html  # last heartbeat in Shanghai time
    assert re.search(r'class="num">4<', html)  # outbox backlog
    assert "验证失败" in html  # quarantine is shown loudly


def test_live_alarms_carry_the_test_hooks_for_people_on_duty(make_client):
    html = make_client("wang").get("/alarms").text
    element = re.search(r'<article[^>]*data-alarm="cab-chem-0042/A3-1".*?</article>', html, re.S)
    assert element, html
    assert 'textarea name="comment"' in element.group(0)
    assert 'data-action="ack"' in element.group(0)
    assert "重量变化无记录" in element.group(0)  # the kind, in Chinese
    # an operator acknowledges but does not resolve a discrepancy
    assert 'data-action="resolve"' not in element.group(0)


def test_a_keeper_sees_the_two_person_resolve_form(make_client):
    html = make_client("zhang").get("/alarms").text
    assert 'data-action="resolve"' in html
    assert 'name="reason"' in html and 'name="second"' in html


def test_an_auditor_sees_alarms_but_no_button_to_act(make_client):
    html = make_client("audit").get("/alarms").text
    assert 'data-alarm="cab-chem-0042/A3-1"' in html
    assert 'data-action="ack"' not in html and 'data-action="resolve"' not in html
    assert make_client("audit").get("/approvals").text.count('data-action="approve"') == 0


def test_an_auditor_posting_an_ack_anyway_is_refused(make_client, gateway):
    client = make_client("audit")
    token = csrf_of(client.get("/alarms").text)
    answer = client.post(f"/alarms/{DEVICE}/A3-1/ack", data={"comment": "x", "csrf": token})
    assert "auditor" in answer.text
    assert gateway.sent == []


def test_acknowledging_from_the_page_sends_the_comment_in_my_name(make_client, gateway):
    client = make_client("wang")
    token = csrf_of(client.get("/alarms").text)
    answer = client.post(
        f"/alarms/{DEVICE}/A3-1/ack", data={"comment": "已到现场查看", "csrf": token}
    )
    assert answer.status_code == 200
    assert "柜子已执行" in answer.text
    assert gateway.sent[0]["args"] == {"alarm": "A3-1", "comment": "已到现场查看"}
    assert gateway.sent[0]["by"] == "p-3001"


def test_weigh_now_asks_the_cabinet_for_a_snapshot_in_my_name(make_client, gateway):
    client = make_client("wang")  # an operator on duty
    html = client.get(f"/cabinets/{DEVICE}").text
    assert 'data-action="weigh"' in html
    answer = client.post(
        f"/cabinets/{DEVICE}/snapshot", data={"csrf": csrf_of(html)}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/cabinets/{DEVICE}"
    assert gateway.sent == [
        {"device": DEVICE, "name": "snapshot", "args": {}, "by": "p-3001", "timeout_s": 10}
    ]
    auditor = make_client("audit")
    auditor_page = auditor.get(f"/cabinets/{DEVICE}").text
    assert 'data-action="weigh"' not in auditor_page
    refused = auditor.post(f"/cabinets/{DEVICE}/snapshot", data={"csrf": csrf_of(auditor_page)})
    assert len(gateway.sent) == 1 and "Traceback" not in refused.text


def test_approving_from_the_page_makes_me_the_second_person(make_client, gateway):
    client = make_client("li")
    html = client.get("/approvals").text
    assert "李娜" in html and "李安全" in html
    client.post(f"/approvals/{DEVICE}/p-1002/approve", data={"csrf": csrf_of(html)})
    assert gateway.sent[0]["name"] == "approve"
    assert gateway.sent[0]["args"] == {"person": "p-1002"} and gateway.sent[0]["by"] == "p-1003"


def test_cabinet_page_shows_books_against_the_scale_and_both_names(make_client):
    html = make_client("audit").get(f"/cabinets/{DEVICE}").text
    assert "氰化钠" in html and "143-33-9" in html and "剧毒" in html
    assert "487.500 g" in html and "487.400 g" in html and "-0.100 g" in html
    assert "张伟 + 李娜" in html
    assert "隔离" in html  # its quarantined record is said out loud, not hidden


def test_ledger_page_filters_and_links_the_same_csv(make_client):
    client = make_client("audit")
    html = client.get(f"/ledger?device={DEVICE}&since=2026-03-01&until=2026-03-01").text
    assert "12.500 g" in html and "张伟 + 李娜" in html
    assert (
        f'href="/api/ledger?format=csv&amp;device={DEVICE}&amp;since=2026-03-01'
        '&amp;until=2026-03-01"' in html
    )
    assert "没有符合条件的记录" in client.get("/ledger?since=2026-03-02").text
    bad = client.get("/ledger?since=someday")
    assert bad.status_code == 400 and "since &#39;someday&#39;" in bad.text


def test_daily_report_defaults_to_todays_local_day(make_client, record):
    client = make_client("audit")
    assert client.get("/daily").status_code == 200
    assert record.daily_asked[-1][1] == "Asia/Shanghai"
    assert client.get("/daily?day=2026-02-30").status_code == 400


def _day_row(container: str, *, ok: bool, weighed: bool) -> DailyRow:
    measured = 475_000 if weighed else None
    return DailyRow(
        datetime.date(2026, 3, 1), "cab-1", container, None,
        500_000, 25_000, 0, 0, 0, 0, 475_000, measured, ok, weighed,
    )  # fmt: skip


def test_a_container_nobody_weighed_that_day_is_not_shown_as_reconciled(make_client, record):
    day = datetime.date(2026, 3, 1)
    record.daily_rows[day] = [
        _day_row("c-weighed", ok=True, weighed=True),
        _day_row("c-unweighed", ok=True, weighed=False),
    ]
    html = make_client("audit").get("/daily?day=2026-03-01").text
    assert "全部账物相符" not in html
    assert "1 个容器当天未称重" in html
    unweighed_row = html[html.index("c-unweighed") :].split("</tr>")[0]
    assert "未称重" in unweighed_row and "✓" not in unweighed_row
    record.daily_rows[day] = [_day_row("c-weighed", ok=True, weighed=True)]
    assert "全部账物相符" in make_client("audit").get("/daily?day=2026-03-01").text


def test_english_on_request_and_chinese_by_default(make_client):
    client = make_client("wang")
    assert "未关闭告警" in client.get("/alarms").text
    client.get("/lang/en?next=/alarms")
    html = client.get("/alarms").text
    assert "Open alarms" in html and "unexplained mass change" in html


def test_an_unknown_cabinet_page_is_a_clear_404(make_client):
    answer = make_client("wang").get("/cabinets/cab-nowhere", headers={"Accept": "text/html"})
    assert answer.status_code == 404 and "cab-nowhere" in answer.text
    assert "Traceback" not in answer.text


def test_static_files_are_served_by_the_centre_itself(make_client):
    client = make_client()
    assert "EventSource" in client.get("/static/console.js").text
    assert "@media print" in client.get("/static/console.css").text
    html = make_client("wang").get("/").text
    assert "http://" not in html and "https://" not in html  # nothing from a CDN


def test_five_wrong_passwords_make_that_login_wait_even_with_the_right_one(make_client):
    client = make_client()
    for _ in range(5):
        assert sign_in(client, "wang", "guess").status_code == 401
    refused = sign_in(client, "wang", PASSWORD)
    assert refused.status_code == 429
    assert "密码错误次数过多" in refused.text
    assert client.get("/", follow_redirects=False).status_code == 303
    # another account is not held up by the guesses against this one
    assert sign_in(client, "zhang", PASSWORD).status_code == 303


def test_pages_allow_only_the_centres_own_scripts(make_client):
    answer = make_client("wang").get("/alarms")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "onclick=" not in answer.text


def test_a_gap_in_a_cabinets_record_is_said_on_its_page(make_client, record):
    import dataclasses

    record.cabinet_rows[0] = dataclasses.replace(record.cabinet_rows[0], missing=((12, 15),))
    html = make_client("audit").get(f"/cabinets/{DEVICE}").text
    assert "记录有缺口" in html and "#12–#15" in html


def test_the_live_stream_needs_a_sign_in(make_client):
    answer = make_client().get("/live", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_the_live_stream_says_that_the_record_changed(make_client, record):
    client = make_client("wang")
    record.mark = 7
    with client.stream("GET", "/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                break
    assert "event: change" in lines and "data: 7" in lines


def test_the_live_stream_says_when_the_database_is_away(make_client, record):
    client = make_client("wang")
    record.down = True
    with client.stream("GET", "/live") as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                break
    assert "event: down" in lines and "data: database" in lines


def test_the_csv_link_keeps_a_filter_with_odd_characters_intact(make_client):
    html = make_client("audit").get("/ledger?container=c%26d%231").text
    assert 'href="/api/ledger?format=csv&amp;container=c%26d%231"' in html


def test_the_ledger_finds_a_person_by_name_as_well_as_by_id(make_client):
    client = make_client("audit")
    for person in ("p-1002", "李娜", "李", "张伟"):
        html = client.get(f"/ledger?person={person}").text
        assert "氰化钠" in html and "12.500 g" in html, person
    assert "12.500 g" not in client.get("/ledger?person=王值班").text  # not in that row
    exported = client.get("/api/ledger?format=csv&person=李娜").content.decode("utf-8-sig")
    assert "氰化钠" in exported  # the export holds the rows the page shows


def test_a_cabinet_never_seen_says_so_rather_than_1970(make_client, record):
    record.cabinet_rows[1] = dataclasses.replace(record.cabinet_rows[1], last_seen_ms=0)
    html = make_client("wang").get("/cabinets/cab-bio-0007").text
    assert "1970" not in html and "最近 —" in html


def test_a_page_carries_the_change_mark_it_was_built_at(make_client, record):
    html = make_client("wang").get("/alarms").text
    assert f'data-mark="{record.change_mark()}"' in html
    # the live stream's first mark is compared with it (static/console.js): a change
    # stored after this page was built is newer, and the page fetches it at once
