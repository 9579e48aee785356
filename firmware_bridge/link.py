"""The agent's end of the MCU link: pyserial, one thread, the sans-I/O protocol inside.

The thread reads the port, feeds the decoder, sends heartbeats, retransmits commands the
MCU has not acknowledged, and watches the MCU's own heartbeats. What happens is reported
through one callback as `LinkEvent`s; the callback runs on the link thread (or on the
caller's thread for a command that fails at once), never under the link's lock.

Liveness: the link is up from the MCU's INFO until `silence_ms` pass without a valid
frame. While down it keeps heartbeating and asks for a new session (HELLO) as soon as
the MCU is heard again; it also asks when the MCU rebooted (its uptime went backwards)
or flags that it gave up on a report (EVENTS_LOST).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial
import structlog

from firmware_bridge.codes import McuStatus
from firmware_bridge.messages import Heartbeat, Hello, Info, Message
from firmware_bridge.protocol import (
    Channel,
    ChannelEvent,
    Confirmed,
    Decoder,
    Deliver,
    Failed,
    FrameError,
    Transmit,
    encode,
)

log = structlog.get_logger("firmware_bridge.link")


@dataclass(frozen=True, slots=True)
class LinkUp:
    """A session with the MCU started (first contact, reconnection or MCU reboot)."""

    info: Info


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str  # "silent" (no frame for silence_ms) or "port" (the port failed)


@dataclass(frozen=True, slots=True)
class Received:
    """A message from the MCU, delivered once (duplicates are already suppressed)."""

    message: Message


@dataclass(frozen=True, slots=True)
class CommandConfirmed:
    message: Message


@dataclass(frozen=True, slots=True)
class CommandFailed:
    message: Message
    reason: str  # "nack:<REASON>", "no_ack", "expired", "queue_full"


LinkEvent = LinkUp | LinkDown | Received | CommandConfirmed | CommandFailed
OnEvent = Callable[[LinkEvent], None]


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass
class LinkStats:
    frames_in: int = 0
    frames_out: int = 0
    frame_errors: int = 0
    port_errors: int = 0
    callback_errors: int = 0


class McuLink:
    """Serial link to the cabinet MCU. `start()`, then `send()` commands; `close()` at the end."""

    READ_TIMEOUT_S = 0.01  # bounds how late a heartbeat or a retransmit can be

    def __init__(
        self,
        port: str,
        on_event: OnEvent,
        *,
        baudrate: int = 115200,
        heartbeat_ms: int = 500,
        silence_ms: int = 3000,
        ack_timeout_ms: int = 200,
        retries: int = 5,
        reopen_ms: int = 1000,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.heartbeat_ms = heartbeat_ms
        self.silence_ms = silence_ms
        self.reopen_ms = reopen_ms
        self._on_event = on_event
        self._channel = Channel(ack_timeout_ms=ack_timeout_ms, retries=retries)
        self._decoder = Decoder()
        self._lock = threading.Lock()  # guards channel, serial writes and link state
        self._stop = threading.Event()
        self._serial: serial.Serial | None = None
        self._thread: threading.Thread | None = None
        self._started_ms = _now_ms()
        self._next_heartbeat_ms = 0
        self._last_heard_ms: int | None = None
        self._last_hello_ms: int | None = None
        self._mcu_uptime_ms: int | None = None
        self._hello_pause_ms = ack_timeout_ms * (retries + 1)
        self.info: Info | None = None  # set while up
        self._reported_down = False
        self._open_failures = 0
        self.stats = LinkStats()

    @property
    def up(self) -> bool:
        return self.info is not None

    @property
    def retransmits(self) -> int:
        return self._channel.retransmits

    def start(self) -> None:
        self._started_ms = _now_ms()
        self._thread = threading.Thread(target=self._run, name="mcu-link", daemon=True)
        self._thread.start()

    def send(self, message: Message, *, expires_in_ms: int | None = None) -> None:
        """Queue a command (reliable) or send at once (unreliable); returns immediately.

        A command still queued `expires_in_ms` after this call is dropped instead of being
        applied late (`CommandFailed(reason="expired")`).
        """
        now = _now_ms()
        expires = None if expires_in_ms is None else now + expires_in_ms
        with self._lock:
            events = self._process(self._channel.send(message, now, expires_at_ms=expires), now)
        self._dispatch(events)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued command is confirmed or failed (used before closing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._channel.idle:
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        """Stop the thread and the heartbeats. The MCU's failsafe then locks by itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._close_port()

    # --- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self._serial
            if port is None:
                if not self._open_port():
                    self._stop.wait(self.reopen_ms / 1000)
                continue
            try:
                data = port.read(1)
                if data and port.in_waiting:
                    data += port.read(port.in_waiting)
            except (serial.SerialException, OSError, TypeError) as exc:
                # TypeError: pyserial's read on a port closed under it; same remedy.
                self._port_failed(exc)
                continue
            now = _now_ms()
            events: list[LinkEvent] = []
            with self._lock:
                if data:
                    events += self._on_bytes(data, now)
                events += self._on_time(now)
            self._dispatch(events)

    def _open_port(self) -> bool:
        try:
            port = serial.Serial(
                self.port,
                self.baudrate,
                timeout=self.READ_TIMEOUT_S,
                write_timeout=1.0,
                exclusive=True,  # two agents driving one lock relay must be impossible
            )
        except (serial.SerialException, OSError) as exc:
            if self._open_failures % 60 == 0:  # once a minute is enough for a missing port
                log.warning("mcu_link.open_failed", port=self.port, error=str(exc))
            self._open_failures += 1
            self.stats.port_errors += 1
            with self._lock:
                events = self._went_down("port")
            self._dispatch(events)
            return False
        self._open_failures = 0
        now = _now_ms()
        with self._lock:
            self._serial = port
            self._decoder = Decoder()
            self._next_heartbeat_ms = now  # heartbeat first: the MCU arms only after one
            events = self._on_time(now) + self._hello(now)
        log.info("mcu_link.opened", port=self.port)
        self._dispatch(events)
        return True

    def _port_failed(self, exc: Exception) -> None:
        log.error("mcu_link.port_failed", port=self.port, error=str(exc))
        self.stats.port_errors += 1
        with self._lock:
            self._close_port()
            events = self._went_down("port")
        self._dispatch(events)
        self._stop.wait(self.reopen_ms / 1000)

    def _close_port(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError) as exc:
                log.warning("mcu_link.close_failed", error=str(exc))
            self._serial = None

    # --- protocol handling, all under the lock ------------------------------------------

    def _on_bytes(self, data: bytes, now: int) -> list[LinkEvent]:
        events: list[LinkEvent] = []
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                # Garbage, a cut frame or a CRC error: the sender retransmits what mattered.
                self.stats.frame_errors += 1
                log.debug("mcu_link.frame_error", reason=item.reason, detail=item.detail)
                reply = self._channel.answer_error(item)
                if reply is not None:
                    events += self._process([reply], now)
                continue
            self.stats.frames_in += 1
            self._last_heard_ms = now
            if self.info is None and not isinstance(item.message, Info):
                events += self._hello(now)  # heard again while down: new session
            events += self._process(self._channel.receive(item, now), now)
        return events

    def _on_time(self, now: int) -> list[LinkEvent]:
        events = self._process(self._channel.poll(now), now)
        if now >= self._next_heartbeat_ms:
            self._next_heartbeat_ms = now + self.heartbeat_ms
            uptime = (now - self._started_ms) % 2**32
            events += self._process(self._channel.send(Heartbeat(uptime), now), now)
        heard = self._last_heard_ms
        silent = heard is None or now - heard >= self.silence_ms
        # Down also when no session came up within silence_ms of starting (MCU absent,
        # mute, or refusing our HELLO): a link that never worked is a fault too.
        if (silent or self.info is None) and now - self._started_ms >= self.silence_ms:
            events += self._went_down("silent" if silent else "no_session")
        return events

    def _went_down(self, reason: str) -> list[LinkEvent]:
        if self._reported_down:
            return []
        self._reported_down = True
        self.info = None
        log.warning("mcu_link.down", reason=reason)
        return [LinkDown(reason)]

    def _hello(self, now: int) -> list[LinkEvent]:
        # At most one HELLO per retransmit cycle: a chatty MCU must not flood us with them.
        if self._last_hello_ms is not None and now - self._last_hello_ms < self._hello_pause_ms:
            return []
        self._last_hello_ms = now
        return self._process(self._channel.send(Hello(), now), now)

    def _process(self, events: list[ChannelEvent], now: int) -> list[LinkEvent]:
        out: list[LinkEvent] = []
        for event in events:
            if isinstance(event, Transmit):
                self._write(encode(event.frame))
            elif isinstance(event, Confirmed):
                if not isinstance(event.message, Hello):
                    out.append(CommandConfirmed(event.message))
            elif isinstance(event, Failed):
                reason = event.reason if event.nack is None else f"nack:{event.nack.name}"
                log.warning("mcu_link.command_failed", message=repr(event.message), reason=reason)
                out.append(CommandFailed(event.message, reason))
            elif isinstance(event, Deliver):
                out += self._deliver(event, now)
        return out

    def _deliver(self, event: Deliver, now: int) -> list[LinkEvent]:
        frame = event.frame
        message = frame.message
        out: list[LinkEvent] = []
        if message.RELIABLE:
            # Reports are acknowledged on receipt: the callback only posts to a queue.
            self._write(encode(self._channel.answer(frame).frame))
        if isinstance(message, Info):
            self.info = message
            self._reported_down = False
            if message.failsafe_ms < 2 * self.heartbeat_ms:
                log.error(
                    "mcu_link.heartbeat_too_slow",
                    heartbeat_ms=self.heartbeat_ms,
                    mcu_failsafe_ms=message.failsafe_ms,
                )
            log.info(
                "mcu_link.up",
                firmware=f"{message.fw_major}.{message.fw_minor}.{message.fw_patch}",
                slots=message.slot_count,
            )
            out.append(LinkUp(message))
        elif isinstance(message, Heartbeat):
            previous, self._mcu_uptime_ms = self._mcu_uptime_ms, message.uptime_ms
            rebooted = previous is not None and message.uptime_ms < previous
            if rebooted or McuStatus.EVENTS_LOST in message.status:
                out += self._hello(now)
            return out
        out.append(Received(message))
        return out

    def _write(self, data: bytes) -> None:
        port = self._serial
        if port is None:
            return  # no port: the frame is lost like on a cut cable; retransmits cover it
        try:
            port.write(data)
            self.stats.frames_out += 1
        except (serial.SerialException, OSError) as exc:
            log.error("mcu_link.write_failed", error=str(exc))
            self.stats.port_errors += 1
            self._close_port()  # the thread notices and reopens

    def _dispatch(self, events: list[LinkEvent]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception as exc:  # a consumer's bug must not stop heartbeats and ACKs
                self.stats.callback_errors += 1
                log.error("mcu_link.callback_failed", link_event=repr(event), error=str(exc))
