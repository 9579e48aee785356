"""cabinetctl against real `cabinet-agent run` processes on a real mosquitto, end to end.

Every cabinet here is the real daemon (core, rules, outbox, uplink, command verifier) on
the simulated cabinet, its agent.toml pinning the central public key that
`cabinetctl keygen` made. The central side is cabinetctl itself: `policy sign/push`, the
remote commands, and `watch --json` as a child process. The only hand-made messages are
the ones neither side ever sends on its own: an expired command, a replayed one, a forged
and a modified envelope.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from agent.wire import (
    SigningKey,
    build_envelope,
    canonical,
    command_topic,
    envelope_hash,
    event_topic,
)
from tests.central.agent_rig import (
    BIN,
    DATA,
    DEVICE,
    HOST_ALARMS,
    SITE,
    Line,
    Rig,
    policy_copy,
    seqs,
    shown,
    wait_status,
    wait_until,
)
from tests.daemon.agent_process import SCENARIOS

pytestmark = pytest.mark.realpart


# --- 1. policy push ------------------------------------------------------------------------


def test_policy_push_is_applied_kept_across_a_restart_and_a_re_push_is_rejected(
    rig: Rig,
) -> None:
    config = rig.cabinet()
    state = config.parent / "state"
    agent = rig.start_agent(config)  # examples/policy.toml: version 7, plain TOML
    rig.wait_online(boot=1)
    source = policy_copy(
        rig.tmp, "policy-v8.toml", ("version = 7", "version = 8"), (f'cabinet = "{DEVICE}"',) * 2
    )
    signed = rig.tmp / "policy-v8.json"
    made = rig.ctl("policy", "sign", str(source), "--out", str(signed))
    assert made.exit_code == 0, made.output

    first = rig.ctl("policy", "push", str(signed), "--device", DEVICE)
    assert first.exit_code == 0, first.output
    applied = rig.wait_event(
        lambda e: e["type"] == "policy.applied" and e["data"]["source"] == "command",
        "policy.applied",
    )
    assert applied["data"]["version"] == 8
    assert first.stdout == (
        f"{DEVICE}: policy applied (policy version 8) [policy.applied seq {applied['seq']}]\n"
    )
    # What the agent accepted is kept on disk exactly as signed, for the next start. (It
    # is written just after policy.applied is committed, so it may lag the answer a bit.)
    kept = state / "policy.json"
    wait_until(kept.exists, "policy.json")
    assert json.loads(kept.read_text()) == json.loads(signed.read_text())

    again = rig.ctl("policy", "push", str(signed), "--device", DEVICE)
    assert again.exit_code == 3, again.output
    rejected = rig.wait_event(
        lambda e: e["type"] == "policy.rejected" and e["data"]["source"] == "command",
        "policy.rejected",
    )
    # A re-push is a new command with a fresh nonce, so it is the rules that refuse it.
    assert rejected["data"]["nonce"] != applied["data"]["nonce"]
    assert (rejected["data"]["reason"], rejected["data"]["current_version"]) == (
        "version_not_newer",
        8,
    )
    assert again.stdout == (
        f"{DEVICE}: policy REJECTED (policy version 8): version_not_newer "
        f"[policy.rejected seq {rejected['seq']}]\n"
    )

    # Restart with the same --policy file (version 7): the persisted version 8 stays.
    assert agent.stop() == 0, agent.log_text()
    rig.start_agent(config)
    rig.wait_online(boot=2)
    # The policy in force is part of the state the cabinet resumes from: nothing to
    # apply again (its persisted copy is the same version), the older file is refused.
    refused_file = rig.wait_event(
        lambda e: e["boot"] == 2 and e["type"] == "policy.rejected", "boot 2 policy.rejected"
    )
    assert refused_file["data"]["source"] == "file" and refused_file["data"]["version"] == 7
    assert refused_file["data"]["reason"] == "version_not_newer"
    wait_status(
        state, lambda s: s["boot"] == 2 and "policy_version" in s, "the restarted agent's status"
    )
    status = subprocess.run(
        [str(BIN / "cabinet-agent"), "status", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["policy_version"] == 8
    boot2 = [e["type"] for e in rig.events() if e["boot"] == 2]
    assert "policy.applied" not in boot2

    after_restart = rig.ctl("policy", "push", str(signed), "--device", DEVICE)
    assert after_restart.exit_code == 3, after_restart.output
    assert "policy REJECTED (policy version 8): version_not_newer" in after_restart.stdout
    elsewhere = rig.ctl("policy", "push", str(signed), "--device", "cab-chem-0043")
    assert elsewhere.exit_code == 1
    assert f"is for cabinet '{DEVICE}', not 'cab-chem-0043'" in elsewhere.output
    rig.assert_whole_chain()


# --- 2. remote commands --------------------------------------------------------------------


def test_remote_commands_are_applied_or_refused_by_the_real_agent(rig: Rig) -> None:
    # Remote approval allowed, and a pair window long enough that the badge stays pending.
    policy = policy_copy(
        rig.tmp,
        "policy-remote.toml",
        ("pair_window_s = 30", "pair_window_s = 36000"),
        ("remote_second = true",) * 2,
    )
    config = rig.cabinet()
    state = config.parent / "state"
    rig.start_agent(config, policy=policy, scenario=DATA / "leak_and_keeper_waiting.jsonl")
    rig.wait_online(boot=1)
    leak = rig.wait_event(
        lambda e: e["type"] == "alarm.raised" and e["data"]["kind"] == "leak", "the leak alarm"
    )
    alarm = leak["data"]["alarm"]
    pending = rig.wait_event(lambda e: e["type"] == "access.pending", "the keeper's badge")
    assert pending["data"]["person"] == "p-1003"

    def the_alarm(status: dict[str, Any]) -> dict[str, Any]:
        """The leak alarm as `cabinet-agent status` shows it ({} if not shown)."""
        return next((a for a in status.get("alarms", []) if a["id"] == alarm), {})

    before = wait_status(state, lambda s: bool(the_alarm(s)), "the leak in the status")
    assert the_alarm(before)["acked"] is False and before["outputs"]["buzzer"] is True

    # An expired command (signed by the right key, for this device) changes nothing.
    refused = rig.send_by_hand("ack", {"alarm": alarm}, "stale-ack-1", expires_in_ms=-300_000)
    assert refused["type"] == "command.rejected"
    assert (refused["data"]["name"], refused["data"]["reason"]) == ("ack", "expired")
    since = int(time.time() * 1000) + 1500  # a status view taken well after the refusal
    unchanged = wait_status(state, lambda s: s["updated_ms"] >= since, "a later status")
    assert the_alarm(unchanged) == the_alarm(before)
    assert unchanged["outputs"]["buzzer"] is True

    snap = rig.ctl("snapshot", "--device", DEVICE)
    assert snap.exit_code == 0, snap.output
    done = rig.wait_event(
        lambda e: e["type"] == "command.applied" and e["data"]["name"] == "snapshot", "snapshot"
    )
    assert snap.stdout == f"{DEVICE}: snapshot applied [command.applied seq {done['seq']}]\n"
    snapshot = rig.wait_event(lambda e: e["type"] == "inventory.snapshot", "inventory.snapshot")
    slots = {s["slot"]: s for s in snapshot["data"]["slots"]}
    assert slots[3]["container"] == "c-NaCN-01"
    assert slots[3]["mass_mg"] == slots[3]["book_mg"] == 500_000
    assert slots[4]["container"] == "c-KMnO4-01"

    # The same signed snapshot command, captured on the broker and sent again: replayed.
    sent = rig.wire.on(command_topic("cabinet", SITE, DEVICE, "snapshot"))
    assert len(sent) == 1
    rig.publish(sent[0].topic, sent[0].payload)
    replay = rig.wait_event(
        lambda e: e["type"] == "command.rejected" and e["data"]["name"] == "snapshot",
        "the replayed snapshot refused",
    )
    assert replay["data"]["reason"] == "replayed_nonce"
    assert replay["data"]["nonce"] == json.loads(sent[0].payload)["nonce"]

    allowance = rig.ctl(
        "approve-withdrawal",
        "--device",
        DEVICE,
        "--container",
        "c-NaCN-01",
        "--max-grams",
        "12.5",
        "--person",
        "p-1003",
        "--person",
        "p-1002",
        "--valid-for",
        "1h",
        "--by",
        "p-1001",
        "--purpose",
        "permanganate titration",
        "--policy",
        str(policy),
    )
    assert allowance.exit_code == 0, allowance.output
    granted = rig.wait_event(
        lambda e: e["type"] == "command.applied" and e["data"]["name"] == "approve_withdrawal",
        "the approved amount",
    )
    assert (granted["data"]["container"], granted["data"]["max_mg"]) == ("c-NaCN-01", 12_500)
    assert granted["data"]["persons"] == ["p-1002", "p-1003"]

    assert rig.times_published(1) == rig.times_published(2) == 1
    again = rig.ctl("resend", "1", "2", "--device", DEVICE)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"{DEVICE}: resend applied [command.applied seq ")
    rig.wire.wait_for(lambda: rig.times_published(2) >= 2, 20, "seq 2 published again")
    assert rig.times_published(1) >= 2

    unknown = rig.ctl("ack", "A1-999", "--by", "p-1003", "--device", DEVICE)
    assert unknown.exit_code == 3, unknown.output
    assert unknown.stdout.startswith(f"{DEVICE}: ack REJECTED: unknown_alarm [command.rejected")
    acked = rig.ctl("ack", alarm, "--by", "p-1003", "--device", DEVICE)
    assert acked.exit_code == 0, acked.output
    assert acked.stdout.startswith(f"{DEVICE}: ack applied [command.applied seq ")
    silenced = wait_status(state, lambda s: the_alarm(s).get("acked") is True, "the ack")
    assert silenced["outputs"]["buzzer"] is False  # buzzer off; the leak is still there

    # Remote second person, signed by hand (the test below drives cabinetctl approve).
    wrong = rig.send_by_hand("approve", {"person": "p-1001", "by": "p-1003"}, "approve-not-pending")
    assert (wrong["type"], wrong["data"]["reason"]) == ("command.rejected", "not_pending")
    approved = rig.send_by_hand("approve", {"person": "p-1003", "by": "p-1001"}, "approve-p-1003")
    assert approved["type"] == "command.applied", approved["data"]
    grant = rig.wait_event(lambda e: e["type"] == "access.granted", "the remote grant")
    assert grant["data"]["mode"] == "remote"
    assert grant["data"]["persons"] == ["p-1003", "p-1001"]
    unlocked = rig.wait_event(lambda e: e["type"] == "lock.unlocked", "the lock released")
    assert unlocked["data"]["session"] == grant["data"]["session"]

    events = rig.assert_whole_chain()
    assert [e["type"] for e in events].count("inventory.snapshot") == 1
    stale_answers = [e for e in events if e["data"].get("nonce") == "stale-ack-1"]
    assert [e["type"] for e in stale_answers] == ["command.rejected"]


def test_cabinetctl_approve_stands_in_as_the_remote_second_person(rig: Rig) -> None:
    policy = policy_copy(
        rig.tmp,
        "policy-remote.toml",
        ("pair_window_s = 30", "pair_window_s = 36000"),
        ("remote_second = true",) * 2,
    )
    config = rig.cabinet()
    rig.start_agent(config, policy=policy, scenario=DATA / "leak_and_keeper_waiting.jsonl")
    rig.wait_online(boot=1)
    rig.wait_event(lambda e: e["type"] == "access.pending", "the keeper's badge")
    # A duty login name is not a person of the policy: refused before anything is sent.
    named = ("approve", "--device", DEVICE, "--person", "p-1003", "--policy", str(policy))
    by_name = rig.ctl(*named, "--by", "op-duty")
    assert by_name.exit_code != 0 and "'op-duty' is not a person id" in by_name.output
    # Sent anyway (no --policy to check against), the cabinet refuses it with the reason.
    unchecked = rig.ctl("approve", "--device", DEVICE, "--person", "p-1003", "--by", "op-duty")
    assert unchecked.exit_code == 3 and "unknown_person" in unchecked.output
    approved = rig.ctl(*named, "--by", "p-1001")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"{DEVICE}: approve applied [command.applied seq ")
    grant = rig.wait_event(lambda e: e["type"] == "access.granted", "the remote grant")
    assert grant["data"]["mode"] == "remote"
    assert grant["data"]["persons"] == ["p-1003", "p-1001"]


# --- 3. watch: verified, forgeries flagged, a missed stretch resent -------------------------


def test_watch_verifies_the_agent_flags_forgeries_and_has_a_missed_stretch_resent(
    rig: Rig,
) -> None:
    config = rig.cabinet()
    store = rig.tmp / "ledger.db"
    first = rig.watch("--key", str(rig.key_file), "--store", str(store))
    rig.start_agent(config, scenario=SCENARIOS / "leak_and_tamper.jsonl", speed=20)

    def cleared(kind: str) -> Callable[[list[Line]], bool]:
        return lambda ls: any(
            x["type"] == "alarm.cleared" and x["envelope"]["data"]["kind"] == kind
            for x in shown(ls, DEVICE)
        )

    first.wait_for(cleared("tamper"), "the scene's alarms raised and cleared")
    live = shown(first.snapshot(), DEVICE)
    assert seqs(live) == list(range(1, len(live) + 1))
    assert all(x["problem"] is None for x in live)
    raised = [x["envelope"]["data"]["kind"] for x in live if x["type"] == "alarm.raised"]
    assert [kind for kind in raised if kind not in HOST_ALARMS] == ["leak", "tamper"]

    # Someone publishes on the cabinet's topics: an alarm signed with another key, and the
    # real leak alarm with its data changed (its signature kept).
    leak = next(
        x for x in live if x["type"] == "alarm.raised" and x["envelope"]["data"]["kind"] == "leak"
    )
    head = live[-1]["envelope"]
    impostor = build_envelope(
        device=DEVICE,
        boot=head["boot"],
        seq=head["seq"] + 1,
        ts=head["ts"] + 1000,
        mono=head["mono"] + 1000,
        clock_ok=True,
        type="alarm.raised",
        sev="alarm",
        data={"alarm": "A1-77", "kind": "door_forced"},
        prev=envelope_hash(head),
        key=SigningKey.generate(),
    )
    rig.publish(event_topic("cabinet", SITE, DEVICE, "alarm.raised"), impostor.payload)
    changed = {**leak["envelope"], "data": {**leak["envelope"]["data"], "kind": "tamper"}}
    rig.publish(leak["topic"], canonical(changed))
    first.wait_for(lambda ls: len(shown(ls, DEVICE, verified=False)) >= 2, "two flagged")
    flagged = shown(first.snapshot(), DEVICE, verified=False)
    assert [x["envelope"]["data"] for x in flagged] == [impostor.fields["data"], changed["data"]]
    assert all("bad signature" in x["problem"] and "forged?" in x["problem"] for x in flagged)
    assert first.stop() == 0
    seen_first = shown(first.snapshot(), DEVICE)
    last_seen = max(seqs(seen_first))

    # While nobody watches, the cabinet goes on (a snapshot asked for, its telemetry).
    missed = rig.ctl("snapshot", "--device", DEVICE)
    assert missed.exit_code == 0, missed.output

    # The console comes back with its ledger; the next event shows the stretch it missed,
    # it asks the real agent for a resend, and the agent republishes it from its outbox.
    second = rig.watch("--key", str(rig.key_file), "--store", str(store))
    later = rig.ctl("snapshot", "--device", DEVICE)
    assert later.exit_code == 0, later.output

    def snapshot_answers() -> list[int]:
        return [
            e["seq"]
            for e in rig.events()
            if e["type"] == "command.applied" and e["data"]["name"] == "snapshot"
        ]

    rig.wire.wait_for(lambda: len(snapshot_answers()) == 2, 20, "both snapshot answers")
    missed_seq, top = snapshot_answers()
    assert last_seen < missed_seq < top, "nothing was missed: no gap to fill"
    second.wait_for(
        lambda ls: set(range(last_seen + 1, top + 1)) <= set(seqs(shown(ls, DEVICE))),
        "the missed stretch filled",
    )
    second.wait_for(
        lambda ls: any(
            x["type"] == "command.applied" and x["envelope"]["data"]["name"] == "resend"
            for x in shown(ls, DEVICE)
        ),
        "the agent's answer to the resend",
    )
    assert second.stop() == 0
    lines = second.snapshot()
    asks = [x for x in lines if x["kind"] == "resend"]
    assert asks and asks[0]["device"] == DEVICE and asks[0]["from_seq"] == last_seen + 1
    assert asks[0]["to_seq"] >= missed_seq
    answer = next(
        x["envelope"]["data"]
        for x in shown(lines, DEVICE)
        if x["type"] == "command.applied" and x["envelope"]["data"]["name"] == "resend"
    )
    assert (answer["from_seq"], answer["to_seq"]) == (asks[0]["from_seq"], asks[0]["to_seq"])
    assert not shown(lines, DEVICE, verified=False)
    again = shown(lines, DEVICE)
    assert all(x["problem"] is None for x in again), [x for x in again if x["problem"]]
    assert len(seqs(again)) == len(set(seqs(again))), "a duplicate was shown twice"
    assert min(seqs(again)) == last_seen + 1

    stored = max(seqs(again))
    verdict = rig.ctl("verify", str(store))
    assert verdict.exit_code == 0 and verdict.output == f"{stored} events, devices 1, OK\n"
    rig.assert_whole_chain()
