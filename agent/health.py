"""Liveness towards systemd: READY, WATCHDOG only while every loop makes progress, STATUS.

The unit is `Type=notify` with `WatchdogSec=` (systemd/cabinet-agent.service). A watchdog
that a separate thread pets unconditionally proves only that the interpreter is alive;
what must not go unnoticed is a core loop stuck in a driver call, an outbox blocked on a
dying SD card or an uplink wedged in a socket: systemd must restart the agent. So each
of those loops registers with a `LoopMonitor` and calls `beat(name)` once per iteration,
and `Health` sends WATCHDOG=1 only while every registered loop has beaten within `stall_s`. When one
falls silent the petting stops, the stall is logged once, and systemd kills (SIGABRT:
faulthandler prints every thread's stack to the journal) and restarts the service.

Contract for the loops: beat at least every `stall_s / 2`, including while idle. A loop
that waits (a queue get, a reconnect back-off of up to a minute) waits in slices with a
timeout and beats between them; a loop that ends on purpose unregisters first.

READY=1 is the daemon's call (`ready()`), once drivers, outbox and uplink threads are
running; it does not wait for the broker, because the cabinet must work offline.

sd_notify is written here rather than taken from a package: the protocol is one datagram
of newline-separated KEY=VALUE lines to the AF_UNIX socket named in $NOTIFY_SOCKET
(sd_notify(3)), about twenty lines, while the bindings (python-systemd, sdnotify) add a
C build or an unmaintained dependency to a box we must patch for years.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

from agent.periodic import Periodic

log = structlog.get_logger("health")

Clock = Callable[[], float]

# A datagram send to systemd normally takes microseconds; if PID 1 is so busy that the
# socket buffer is full, give up after this long instead of blocking the caller (the
# core or the uplink may be the one setting STATUS).
SEND_TIMEOUT_S = 1.0


def notify_address(value: str | None) -> str | None:
    """$NOTIFY_SOCKET as a socket address: a path, or '@name' for the abstract namespace."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # e.g. systemd's "vsock:" form for VMs: not a thing on a Raspberry Pi


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of $WATCHDOG_USEC (the petting period sd_watchdog_enabled(3) recommends), or
    None when the watchdog is off or meant for another process ($WATCHDOG_PID)."""
    raw = environ.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    try:
        usec = int(raw)
        if owner and int(owner) != pid:
            return None
    except ValueError:
        log.warning("health.bad_watchdog_env", watchdog_usec=raw, watchdog_pid=owner)
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


def status_line(uplink: str, backlog: int, oldest_unsent_age_s: int | None = None) -> str:
    """The STATUS= text `systemctl status` shows: uplink state and outbox backlog."""
    text = f"uplink {uplink}, backlog {backlog}"
    if backlog and oldest_unsent_age_s is not None:
        text += f" (oldest {oldest_unsent_age_s} s)"
    return text


class SdNotifier:
    """sd_notify(3) without libsystemd. With no $NOTIFY_SOCKET every call is a no-op, so
    the same daemon runs under systemd, in a terminal and in tests."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.failures = 0  # sends that did not reach systemd, for the logs and tests
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SdNotifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET")
        address = notify_address(raw)
        if raw and address is None:
            log.warning("health.notify_socket_unsupported", notify_socket=raw)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send KEY=VALUE lines in one datagram; True when systemd got them."""
        if self.address is None:
            return False
        for line in assignments:
            if "=" not in line or "\n" in line:
                raise ValueError(f"not a single KEY=VALUE line: {line!r}")
        payload = "\n".join(assignments).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(payload, self.address)
            except OSError as exc:
                self.failures += 1
                if not self._failing:  # once per streak: the watchdog retries every few s
                    self._failing = True
                    log.warning("health.notify_failed", error=str(exc), failures=self.failures)
                return False
            if self._failing:
                self._failing = False
                log.info("health.notify_recovered", failures=self.failures)
            return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> SdNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopMonitor:
    """Last beat of every long-running loop, on a monotonic clock.

    A loop must be registered before it counts: a loop that died before its first beat
    would otherwise never be missed. Registering counts as a beat, so a loop gets
    `stall_s` to start.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def register(self, name: str) -> None:
        with self._lock:
            self._last[name] = self.clock()

    def unregister(self, name: str) -> None:
        with self._lock:
            self._last.pop(name, None)

    def beat(self, name: str) -> None:
        """Called once per loop iteration: one clock read and a dict store under a lock."""
        now = self.clock()
        with self._lock:
            if name not in self._last:
                raise KeyError(f"loop {name!r} beats but was never registered")
            self._last[name] = now

    @property
    def loops(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._last)

    def silent_for(self) -> dict[str, float]:
        """Seconds since each registered loop last beat."""
        now = self.clock()
        with self._lock:
            return {name: now - last for name, last in self._last.items()}

    def stalled(self, stall_s: float) -> dict[str, float]:
        """The loops silent for longer than `stall_s`, with how long."""
        return {name: age for name, age in self.silent_for().items() if age > stall_s}


class Health:
    """Tells systemd the agent is ready, alive (only while all loops progress) and how it is.

    `interval_s` is the petting period; by default half of $WATCHDOG_USEC. When both are
    set the shorter wins, since petting slower than systemd expects gets us killed. With
    neither (no watchdog configured) the thread still watches the loops and logs stalls
    every `stall_s / 4`, but sends no WATCHDOG=1.
    """

    def __init__(
        self,
        monitor: LoopMonitor,
        notifier: SdNotifier | None = None,
        *,
        interval_s: float | None = None,
        stall_s: float = 20.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.monitor = monitor
        self.notifier = SdNotifier.from_env(env) if notifier is None else notifier
        self.stall_s = stall_s
        from_env = watchdog_interval_s(env, os.getpid())
        candidates = [i for i in (interval_s, from_env) if i is not None]
        self.watchdog_enabled = bool(candidates)
        self.interval_s = min(candidates) if candidates else stall_s / 4
        if self.interval_s <= 0:
            raise ValueError("watchdog interval must be positive")
        self.pets = 0  # WATCHDOG=1 sent: reported in status.json (counters)
        self.check_failures = 0
        self._stalled: dict[str, float] = {}
        self._stopping = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the daemon calls --------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("health thread already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()
        log.info(
            "health.started",
            watchdog=self.watchdog_enabled,
            interval_s=self.interval_s,
            stall_s=self.stall_s,
            notify=self.notifier.enabled,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def ready(self, status: str | None = None) -> None:
        lines = ["READY=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        self.notifier.send(*lines)
        log.info("health.ready", notify=self.notifier.enabled)

    def set_status(self, text: str) -> None:
        self.notifier.send("STATUS=" + _one_line(text))

    def stopping(self) -> None:
        """Shutdown began: loops now end on purpose, so silence is no longer a stall."""
        with self._lock:
            self._stopping = True
        self.notifier.send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask systemd for more start (or stop) time, e.g. while a large outbox recovers."""
        self.notifier.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    # -- one watchdog round (the thread's body; tests call it directly) ----------------

    @property
    def stalled(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._stalled)

    def check(self) -> bool:
        """Look at the loops; pet the watchdog if all progress. True when healthy."""
        with self._lock:
            if self._stopping:
                return True
        stalled = self.monitor.stalled(self.stall_s)
        self._note_transitions(stalled)
        if stalled:
            return False
        if self.watchdog_enabled and self.notifier.send("WATCHDOG=1"):
            self.pets += 1
        return True

    def _note_transitions(self, stalled: dict[str, float]) -> None:
        with self._lock:
            before = self._stalled
            self._stalled = stalled
        for name in stalled.keys() - before.keys():
            log.error(
                "health.loop_stalled",
                loop=name,
                silent_s=round(stalled[name], 1),
                stall_s=self.stall_s,
                watchdog_withheld=self.watchdog_enabled,
            )
        for name in before.keys() - stalled.keys():
            log.warning("health.loop_recovered", loop=name)
        # A recovery leaves the stall text up until the daemon's next status update.
        if stalled and stalled.keys() != before.keys():
            self.set_status("stalled: " + ", ".join(sorted(stalled)))

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:
                # Not expected; keep watching. A check that keeps failing never pets,
                # so systemd still restarts a broken agent.
                self.check_failures += 1
                log.exception("health.check_failed", failures=self.check_failures)
            if self._stop.wait(self.interval_s):
                return


class ProgressWatch(Periodic):
    """Beats `name` for a loop that only counts its own turns, while the count moves.

    The uplink counts turns (`progress`) instead of beating itself; a count that stops
    moving means its thread is stuck (or dead), and the watchdog must stop being petted.
    """

    def __init__(
        self, monitor: LoopMonitor, name: str, progress: Callable[[], int], period_s: float
    ) -> None:
        self._monitor, self._name, self._progress = monitor, name, progress
        self._seen = -1
        super().__init__(f"{name}-watch", period_s, self._look)

    def _look(self) -> None:
        progress = self._progress()
        if progress != self._seen:
            self._seen = progress
            self._monitor.beat(self._name)


def _one_line(text: str) -> str:
    # A newline in STATUS= would start a new assignment (READY=1, say) in the datagram.
    return " ".join(text.split())
