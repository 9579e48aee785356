"""What the agent says about itself while it runs: STATUS=, status.json, heartbeat events.

Every second `Heartbeat` tells systemd the uplink state and the outbox backlog
(`systemctl status`) and rewrites status.json (`cabinet-agent status`); every
`every_s` it posts a `Heartbeat` input, which the rules record as `system.heartbeat`.
It reads the outbox and the uplink's state, never the rule state (the core thread hands
the status file its view, see agent.status).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.clock import Clock
from agent.health import Health, status_line
from agent.outbox import Outbox
from agent.periodic import Periodic
from agent.status import StatusFile
from rules import inputs as i


class Heartbeat(Periodic):
    def __init__(
        self,
        *,
        outbox: Outbox,
        uplink_state: Callable[[], str],
        clock: Clock,
        health: Health,
        status: StatusFile,
        post: Callable[[i.AnyInput], None],
        every_s: float,
    ) -> None:
        self._outbox, self._uplink_state, self._clock = outbox, uplink_state, clock
        self._health, self._status, self._post = health, status, post
        self._every_s = every_s
        self._started = time.monotonic()
        self._next_beat = self._started + every_s
        super().__init__("heartbeat", 1.0, self.turn, at_start=True)

    def turn(self) -> None:
        now = time.monotonic()
        stats = self._outbox.stats()
        age = (
            None
            if stats.oldest_unsent_ts is None
            else max(0, (self._clock.now().wall_ms - stats.oldest_unsent_ts) // 1000)
        )
        uplink = self._uplink_state()
        self._health.set_status(status_line(uplink, stats.unsent, age))
        self._status.write(uplink, stats.unsent, age)
        if now >= self._next_beat:
            self._next_beat = now + self._every_s
            self._post(
                i.Heartbeat(
                    {
                        "uptime_s": int(now - self._started),
                        "outbox_unsent": stats.unsent,
                        "oldest_unsent_age_s": age,
                        "uplink": uplink,
                        "outbox_over_cap": stats.over_cap,
                    }
                )
            )
