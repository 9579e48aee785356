"""The outbox: nothing committed is lost, no seq is reused, telemetry alone may be shed."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.outbox import Draft, Outbox, OutboxError
from agent.wire import SigningKey, verify_chain

ROOT = Path(__file__).resolve().parents[2]
SEED = "11" * 32
KEY = SigningKey.from_seed(bytes.fromhex(SEED))


def drafts(kind: str, n: int, size: int = 50) -> list[Draft]:
    return [Draft(kind, "info", {"pad": "x" * size, "i": i}, 1000 + i, i, True) for i in range(n)]


def stored(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    rows = [json.loads(r[0]) for r in db.execute("SELECT payload FROM events ORDER BY seq")]
    db.close()
    return rows


def test_seq_boot_and_chain_continue_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, "cab-1", KEY)
    assert box.boot == 1
    box.append_batch(drafts("access.pending", 3))
    box.close()
    box = Outbox(path, "cab-1", KEY)
    assert (box.boot, box.last_seq) == (2, 3)
    env = box.append(drafts("door.opened", 1)[0])
    assert env.seq == 4 and env.fields["boot"] == 2
    box.close()
    assert verify_chain(stored(path), KEY.public).ok


def test_unsent_comes_in_seq_order_and_mark_sent_removes_from_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "cab-1", KEY)
    box.append_batch(drafts("env.reading", 10))
    assert [s.seq for s in box.unsent(limit=4)] == [1, 2, 3, 4]
    assert box.mark_sent([2, 3, 99]) == 2
    assert [s.seq for s in box.unsent()] == [1, 4, 5, 6, 7, 8, 9, 10]
    assert [s.seq for s in box.unsent(after_seq=5, limit=2)] == [6, 7]
    assert box.stats().unsent == 8


def test_an_outbox_of_another_device_or_key_is_refused(tmp_path: Path) -> None:
    Outbox(tmp_path / "o.db", "cab-1", KEY).close()
    with pytest.raises(OutboxError, match="belongs to device"):
        Outbox(tmp_path / "o.db", "cab-2", KEY)
    with pytest.raises(OutboxError, match="another key"):
        Outbox(tmp_path / "o.db", "cab-1", SigningKey.generate())


def test_at_the_disk_cap_only_unsent_telemetry_is_shed_and_the_shedding_is_recorded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "cab-1", KEY, max_bytes=64 * 1024)
    for _ in range(40):
        box.append_batch(drafts("env.reading", 5, size=200) + drafts("alarm.raised", 1, size=200))
    box.append_batch(drafts("access.denied", 2, size=200))
    events = stored(path)
    kinds = [e["type"] for e in events]
    assert kinds.count("alarm.raised") == 40, "an alarm was shed"
    assert kinds.count("access.denied") == 2, "an access record was shed"
    dropped = [e["data"] for e in events if e["type"] == "system.outbox_dropped"]
    assert dropped and sum(d["count"] for d in dropped) == 200 - kinds.count("env.reading")
    assert box.stats().stored_bytes <= 64 * 1024
    report = verify_chain(events, KEY.public)
    assert report.ok, report.failures
    assert report.shed == sum(d["count"] for d in dropped)


def test_past_the_cap_access_and_alarm_records_are_kept_not_dropped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "cab-1", KEY, max_bytes=64 * 1024)
    for _ in range(30):
        box.append_batch(drafts("alarm.raised", 5, size=400))
    assert box.stats().unsent == 150
    assert box.over_cap


def test_at_the_cap_acknowledged_events_are_pruned_before_anything_unsent(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "cab-1", KEY, max_bytes=64 * 1024)
    box.append_batch(drafts("alarm.raised", 100, size=400))
    box.mark_sent(range(1, 101))
    box.append_batch(drafts("env.reading", 60, size=400))  # ~45 KB: fits once sent are gone
    kinds = [e["type"] for e in stored(path)]
    assert "system.outbox_dropped" not in kinds
    assert kinds.count("env.reading") == 60
    assert kinds.count("alarm.raised") < 100


def test_nothing_committed_is_lost_when_the_process_is_killed_at_random(tmp_path: Path) -> None:
    """SIGKILL a child that appends in a loop, 50 times: every seq it reported after
    append returned is there, seqs are contiguous, the chain verifies, and the next
    append continues at the right seq."""
    path = tmp_path / "crash.db"
    rng = random.Random(20261122)
    reported: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for kill in range(50):
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("outbox_child.py")),
                str(path),
                SEED,
                str(rng.choice([1, 1, 7])),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        header = child.stdout.readline().split()
        assert header[0] == "boot" and int(header[1]) == kill + 1
        assert int(header[3]) >= max(reported, default=0)
        time.sleep(rng.uniform(0.005, 0.08))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        reported.update(int(line) for line in out.split() if line.isdigit())
        events = stored(path)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"kill {kill}: seqs not contiguous"
        assert reported <= set(seqs), f"kill {kill}: a reported seq was lost"
    box = Outbox(path, "cab-crash", KEY)
    last = box.last_seq
    assert box.append(drafts("system.started", 1)[0]).seq == last + 1
    box.close()
    report = verify_chain(stored(path), KEY.public)
    assert report.ok, report.failures[:3]
    assert len(reported) > 50
