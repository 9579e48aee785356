"""How one console is set up: the session key, the time zone people read, the limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LANGUAGES = ("zh-CN", "en")


def _always_up() -> bool:
    return True


@dataclass(frozen=True)
class WebSettings:
    # Signs the session cookie. Every `serve` process on one database must share it, or a
    # person signed in through one process is a stranger to the next.
    secret_key: str
    time_zone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    # Idle limit: the cookie is re-signed on every answer, so a console left open on a
    # night-duty screen stays signed in while it is used, and not for long after.
    session_idle_s: int = 8 * 3600
    https_only: bool = False
    max_body_bytes: int = 64 * 1024
    command_timeout_s: float = 10.0
    # How often the live stream looks at the store's change mark: a new alarm must be on
    # screen within 1 s, so a quarter of that leaves room for the page's own fetch.
    live_poll_s: float = 0.25
    ingest_connected: Callable[[], bool] = field(default=_always_up)

    def __post_init__(self) -> None:
        if len(self.secret_key) < 16:
            raise ValueError("web secret_key: at least 16 characters")
        if self.language not in LANGUAGES:
            raise ValueError(f"web language {self.language!r}: one of {', '.join(LANGUAGES)}")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"web time_zone {self.time_zone!r}: not a known zone") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
