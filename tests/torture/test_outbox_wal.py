"""The outbox's write-ahead log stays bounded under a steady stream of small commits.

Checkpoints run on their own thread (agent/outbox.py); if one never caught up with the
writers, SQLite would never rewind the log and it would grow by every commit (19 MB
after 1,500 single-event commits when that was the case), on an SD card, for ever.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from agent.outbox import Draft, Outbox
from agent.wire import SigningKey, verify_chain

LIMIT = 8 * 1024 * 1024  # the 4 MiB journal_size_limit, with room for one burst


def test_the_log_is_rewound_while_the_core_commits_and_the_uplink_marks(tmp_path: Path) -> None:
    key = SigningKey.generate()
    box = Outbox(tmp_path / "outbox.db", "cab-1", key)
    wal = Path(f"{tmp_path / 'outbox.db'}-wal")
    stop = threading.Event()

    def uplink() -> None:  # marks what the core committed, as the uplink does
        while not stop.is_set():
            box.mark_sent(s.seq for s in box.unsent(limit=50))
            time.sleep(0.001)

    marker = threading.Thread(target=uplink)
    marker.start()
    largest = 0
    try:
        for i in range(3000):
            box.append(Draft("alarm.raised", "alarm", {"alarm": f"A1-{i}"}, i, i, True))
            largest = max(largest, os.path.getsize(wal))
    finally:
        stop.set()
        marker.join()
    assert box._checkpointer.done >= 3, "no checkpoint ran"
    assert largest <= LIMIT, f"the log grew to {largest // 1024} KiB"
    box.close()
    reopened = Outbox(tmp_path / "outbox.db", "cab-1", key)
    rows = reopened.range(1, 3000)
    assert [r.seq for r in rows] == list(range(1, 3001))
    assert verify_chain([json.loads(r.payload) for r in rows], key.public).ok
    reopened.close()
