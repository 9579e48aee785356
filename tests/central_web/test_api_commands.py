"""Commands through the API: signed in the name of the signed-in person, refused by role,
and bad input refused before anything is signed."""

from __future__ import annotations

import json

import pytest

from central.web.roles import COMMAND_ROLES
from tests.central_web.conftest import DEVICE, csrf_of
from tests.central_web.record import CommandAnswer

ACK = f"/api/commands/{DEVICE}/ack"


def test_an_operator_acknowledges_in_their_own_name(make_client, gateway):
    client = make_client("wang", token=True)
    answer = client.post(ACK, json={"alarm": "A3-1", "comment": "已到现场"})
    assert answer.status_code == 200
    assert answer.json() == {"result": "applied", "reason": None, "seq": 42}
    assert gateway.sent == [
        {
            "device": DEVICE,
            "name": "ack",
            "args": {"alarm": "A3-1", "comment": "已到现场"},
            "by": "p-3001",
            "timeout_s": 10.0,
        }
    ]


def test_an_ack_without_comment_sends_null(make_client, gateway):
    make_client("wang", token=True).post(ACK, json={"alarm": "A3-1"})
    assert gateway.sent[0]["args"] == {"alarm": "A3-1", "comment": None}


def test_the_cabinets_refusal_and_silence_are_passed_on(make_client, gateway):
    client = make_client("wang", token=True)
    gateway.answer = CommandAnswer("rejected", "unknown_alarm", 77)
    assert client.post(ACK, json={"alarm": "A9-9"}).json() == {
        "result": "rejected",
        "reason": "unknown_alarm",
        "seq": 77,
    }
    gateway.answer = CommandAnswer("timeout", None, None)
    assert client.post(ACK, json={"alarm": "A9-9"}).json()["result"] == "timeout"


def test_an_auditor_cannot_acknowledge(make_client, gateway):
    answer = make_client("audit", token=True).post(ACK, json={"alarm": "A3-1"})
    assert answer.status_code == 403
    assert "auditor" in answer.json()["error"]
    assert gateway.sent == []


@pytest.mark.parametrize("name", sorted(COMMAND_ROLES))
def test_an_auditor_sends_no_command_at_all(make_client, gateway, name):
    answer = make_client("audit", token=True).post(f"/api/commands/{DEVICE}/{name}", json={})
    assert answer.status_code == 403
    assert gateway.sent == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("approve", {"person": "p-1002"}),
        ("resolve", {"alarm": "A3-1", "reason": "recount", "persons": ["p-3001", "p-1001"]}),
        ("stocktake", {"persons": ["p-3001", "p-1001"]}),
        (
            "approve_withdrawal",
            {"container": "c", "max_mg": 1, "persons": ["p-1"], "until_ms": 1, "purpose": "x"},
        ),
        ("approve_disposal", {"container": "c", "persons": ["p-1"], "until_ms": 1, "purpose": "x"}),
    ],
)
def test_an_operator_may_not_resolve_or_approve(make_client, gateway, name, args):
    answer = make_client("wang", token=True).post(f"/api/commands/{DEVICE}/{name}", json=args)
    assert answer.status_code == 403
    assert gateway.sent == []


def test_a_keeper_resolves_with_a_second_qualified_person(make_client, gateway):
    args = {"alarm": "A3-1", "reason": "evaporation", "persons": ["p-1001", "p-1003"]}
    answer = make_client("zhang", token=True).post(f"/api/commands/{DEVICE}/resolve", json=args)
    assert answer.status_code == 200
    assert gateway.sent[0]["args"] == {**args, "comment": None}
    assert gateway.sent[0]["by"] == "p-1001"


def test_a_two_person_act_must_include_the_signed_in_person(make_client, gateway):
    args = {"alarm": "A3-1", "reason": "recount", "persons": ["p-1002", "p-1003"]}
    answer = make_client("zhang", token=True).post(f"/api/commands/{DEVICE}/resolve", json=args)
    assert answer.status_code == 422
    assert "p-1001" in answer.json()["error"]
    assert gateway.sent == []


def test_a_safety_officer_approves_a_waiting_badge(make_client, gateway):
    answer = make_client("li", token=True).post(
        f"/api/commands/{DEVICE}/approve", json={"person": "p-1002"}
    )
    assert answer.status_code == 200
    assert gateway.sent[0]["args"] == {"person": "p-1002"} and gateway.sent[0]["by"] == "p-1003"


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("ack", {"alarm": "A3-1", "by": "p-1001"}, "'by' is filled in by the centre"),
        ("ack", {"alarm": 31}, "alarm"),
        ("ack", {"alarm": "A3-1", "comment": "line\nbreak"}, "control characters"),
        ("ack", {"alarm": "A3-1", "comment": "x" * 501}, "comment"),
        ("ack", {"alarm": "A3-1", "extra": 1}, "extra"),
        ("ack", [1, 2], "JSON object"),
        ("resolve", {"alarm": "A3-1", "reason": "lost", "persons": ["p-1001", "p-1003"]}, "reason"),
        (
            "resolve",
            {"alarm": "A3-1", "reason": "other", "persons": ["p-1001", "p-1003"]},
            "needs a comment",
        ),
        (
            "resolve",
            {"alarm": "A3-1", "reason": "spill", "persons": ["p-1001", "p-1001"]},
            "two different people",
        ),
        ("resend", {"from_seq": 10, "to_seq": 2}, "to_seq"),
        ("resend", {"from_seq": "1", "to_seq": 2}, "from_seq"),
        (
            "approve_withdrawal",
            {"container": "c", "max_mg": "1", "persons": ["p-1"], "until_ms": 1, "purpose": "x"},
            "max_mg",
        ),
    ],
)
def test_bad_arguments_are_422_and_nothing_is_signed(make_client, gateway, name, body, says):
    answer = make_client("zhang", token=True).post(f"/api/commands/{DEVICE}/{name}", json=body)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["error"]
    assert gateway.sent == []


def test_a_body_that_is_not_json_is_400(make_client, gateway):
    answer = make_client("wang", token=True).post(
        ACK, content=b"{alarm: A3-1", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert "not JSON" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 50_000, "nested too deep"),  # json.loads alone would recurse to a 500
        (b'{"alarm": "A3-1", "alarm": "A9-9"}', "duplicate key"),  # which one was meant?
        (b'{"alarm": "A3-1", "n": 1.5}', "floats"),
        (b'{"alarm": "A3-1", "comment": "\xff"}', "not JSON"),
    ],
)
def test_a_body_no_strict_reader_accepts_is_400_and_nothing_is_signed(
    make_client, gateway, body, says
):
    answer = make_client("wang", token=True).post(
        ACK, content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert gateway.sent == []


def test_an_unknown_command_or_device_is_404(make_client, gateway):
    client = make_client("root", token=True)
    unknown_name = client.post(f"/api/commands/{DEVICE}/unlock", json={})
    assert unknown_name.status_code == 404 and "unlock" in unknown_name.json()["error"]
    unknown_device = make_client("wang", token=True).post(
        "/api/commands/cab-nowhere/ack", json={"alarm": "A1-1"}
    )
    assert unknown_device.status_code == 404 and "cab-nowhere" in unknown_device.json()["error"]
    assert gateway.sent == []


def test_an_oversized_body_is_413(make_client, gateway):
    big = json.dumps({"alarm": "A3-1", "comment": "x" * 100_000})
    answer = make_client("wang", token=True).post(
        ACK, content=big, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert "too large" in answer.json()["error"]
    assert gateway.sent == []


def test_an_oversized_body_without_a_length_is_413(make_client, gateway):
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    answer = make_client("wang", token=True).post(
        ACK, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert gateway.sent == []


def test_a_session_caller_must_prove_the_request_came_from_the_console(make_client, gateway):
    client = make_client("wang")
    refused = client.post(ACK, json={"alarm": "A3-1"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    token = csrf_of(client.get("/alarms").text)
    accepted = client.post(ACK, json={"alarm": "A3-1"}, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 200
    assert len(gateway.sent) == 1


def test_commands_need_a_login(make_client, gateway):
    assert make_client().post(ACK, json={"alarm": "A3-1"}).status_code == 401
    assert gateway.sent == []


def test_a_command_the_broker_never_took_is_503_and_says_so(make_client, gateway):
    gateway.broker_down = True
    answer = make_client("wang", token=True).post(ACK, json={"alarm": "A3-1"})
    assert answer.status_code == 503
    assert "broker unreachable" in answer.json()["error"]
