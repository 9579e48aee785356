"""Child for the crash test: append events for ever, report each seq once append returns."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.outbox import Draft, Outbox
from agent.wire import SigningKey

path, seed_hex, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
outbox = Outbox(path, "cab-crash", SigningKey.from_seed(bytes.fromhex(seed_hex)), max_bytes=1 << 30)
print(f"boot {outbox.boot} last {outbox.last_seq}", flush=True)
n = 0
while True:
    n += 1
    drafts = [
        Draft("access.denied", "warning", {"reason": "unknown_card", "n": n, "k": k}, n, n, True)
        for k in range(batch)
    ]
    for env in outbox.append_batch(drafts):
        sys.stdout.write(f"{env.seq}\n")
    sys.stdout.flush()
