"""agent/health.py against a real notify socket, real threads and short real intervals."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from agent.health import (
    Health,
    LoopMonitor,
    SdNotifier,
    notify_address,
    status_line,
    watchdog_interval_s,
)
from tests.health.conftest import NotifySocket

LOOPS = ("core", "outbox", "uplink")


class LoopThread:
    """A daemon loop that beats every few milliseconds until paused or stopped."""

    def __init__(self, monitor: LoopMonitor, name: str) -> None:
        self.monitor = monitor
        self.name = name
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        monitor.register(name)
        self._thread = threading.Thread(target=self._run, name=f"loop-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            if self.running.is_set():
                self.monitor.beat(self.name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingNotifier(SdNotifier):
    def __init__(self) -> None:
        super().__init__("@recording")
        self.sent: list[tuple[str, ...]] = []

    def send(self, *assignments: str) -> bool:
        self.sent.append(assignments)
        return True


@pytest.fixture
def loops() -> Iterator[tuple[LoopMonitor, dict[str, LoopThread]]]:
    monitor = LoopMonitor()
    threads = {name: LoopThread(monitor, name) for name in LOOPS}
    yield monitor, threads
    for thread in threads.values():
        thread.stop()


def env_for(sock: NotifySocket, watchdog_usec: int) -> dict[str, str]:
    return {
        "NOTIFY_SOCKET": sock.env_value,
        "WATCHDOG_USEC": str(watchdog_usec),
        "WATCHDOG_PID": str(os.getpid()),
    }


# -- the watchdog with real sockets and threads -------------------------------------------


def test_ready_then_periodic_watchdog_reach_systemd_from_the_main_process(
    abstract_notify_socket: NotifySocket, loops: tuple[LoopMonitor, dict[str, LoopThread]]
) -> None:
    monitor, _ = loops
    health = Health(monitor, environ=env_for(abstract_notify_socket, 100_000), stall_s=1.0)
    assert health.interval_s == pytest.approx(0.05)  # half of WATCHDOG_USEC
    health.start()
    try:
        health.ready(status=status_line("connecting", 0))
        ready = abstract_notify_socket.wait_for("READY=1")
        assert ready.fields["STATUS"] == "uplink connecting, backlog 0"
        pets = [abstract_notify_socket.wait_for("WATCHDOG=1") for _ in range(3)]
    finally:
        health.stop()
    # Sent from the health thread, yet credited to the main PID, as NotifyAccess=main needs.
    assert {n.pid for n in [ready, *pets]} == {os.getpid()}


def test_a_stalled_core_loop_stops_the_watchdog_until_it_beats_again(
    abstract_notify_socket: NotifySocket, loops: tuple[LoopMonitor, dict[str, LoopThread]]
) -> None:
    monitor, threads = loops
    health = Health(monitor, environ=env_for(abstract_notify_socket, 100_000), stall_s=0.5)
    with structlog.testing.capture_logs() as logs:
        health.start()
        try:
            abstract_notify_socket.wait_for("WATCHDOG=1")
            threads["core"].running.clear()  # the core loop hangs in a driver call

            deadline = time.monotonic() + 3
            while "core" not in health.stalled and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "core" in health.stalled
            backlog = abstract_notify_socket.drain()
            assert any("STATUS=stalled: core" in n.lines for n in backlog)
            # Six petting periods with the core silent: systemd would now restart us.
            assert abstract_notify_socket.count_within("WATCHDOG=1", 0.3) == 0

            threads["core"].running.set()
            abstract_notify_socket.wait_for("WATCHDOG=1")
        finally:
            health.stop()

    def about_core(event: str) -> list[MutableMapping[str, Any]]:
        return [e for e in logs if e["event"] == event and e["loop"] == "core"]

    assert [e["log_level"] for e in about_core("health.loop_stalled")] == ["error"]  # once
    assert len(about_core("health.loop_recovered")) == 1


def test_notify_socket_may_be_a_path(path_notify_socket: NotifySocket) -> None:
    notifier = SdNotifier.from_env({"NOTIFY_SOCKET": path_notify_socket.env_value})
    with notifier:
        assert notifier.send("READY=1", "STATUS=up")
    got = path_notify_socket.wait_for("READY=1")
    assert got.lines == ("READY=1", "STATUS=up")


def test_stopping_is_announced_and_silence_after_it_is_not_a_stall(
    abstract_notify_socket: NotifySocket,
) -> None:
    clock = FakeClock()
    monitor = LoopMonitor(clock)
    monitor.register("core")
    health = Health(
        monitor,
        environ={"NOTIFY_SOCKET": abstract_notify_socket.env_value},
        interval_s=1,
        stall_s=20,
    )
    health.stopping()
    assert abstract_notify_socket.wait_for("STOPPING=1").lines == ("STOPPING=1",)
    clock.now += 60  # loops end during shutdown
    with structlog.testing.capture_logs() as logs:
        assert health.check()
    assert logs == []
    assert health.pets == 0


def test_a_status_text_cannot_smuggle_in_other_assignments(
    abstract_notify_socket: NotifySocket,
) -> None:
    health = Health(LoopMonitor(), environ={"NOTIFY_SOCKET": abstract_notify_socket.env_value})
    health.set_status("uplink down\nREADY=1\r\nWATCHDOG=trigger")
    got = abstract_notify_socket.wait_for("STATUS=uplink down READY=1 WATCHDOG=trigger")
    assert len(got.lines) == 1


def test_extend_timeout_is_in_microseconds(abstract_notify_socket: NotifySocket) -> None:
    health = Health(LoopMonitor(), environ={"NOTIFY_SOCKET": abstract_notify_socket.env_value})
    health.extend_timeout(30)
    abstract_notify_socket.wait_for("EXTEND_TIMEOUT_USEC=30000000")


# -- one watchdog round on a fake clock ----------------------------------------------------


def test_watchdog_is_petted_only_while_every_loop_beats_within_stall_s() -> None:
    clock = FakeClock()
    monitor = LoopMonitor(clock)
    for name in LOOPS:
        monitor.register(name)
    notifier = RecordingNotifier()
    health = Health(monitor, notifier, interval_s=10, stall_s=20, environ={})

    clock.now += 20  # exactly stall_s: still alive
    assert health.check()
    assert notifier.sent[-1] == ("WATCHDOG=1",)

    monitor.beat("outbox")
    monitor.beat("uplink")
    clock.now += 0.5
    notifier.sent.clear()
    with structlog.testing.capture_logs() as logs:
        assert not health.check()
        assert not health.check()  # still stalled: no second log line
    assert health.stalled == ("core",)
    assert ("WATCHDOG=1",) not in notifier.sent
    assert [e["event"] for e in logs] == ["health.loop_stalled"]
    assert logs[0]["silent_s"] == 20.5

    monitor.beat("core")
    assert health.check()
    assert not health.stalled
    assert notifier.sent[-1] == ("WATCHDOG=1",)
    assert health.pets == 2


def test_a_loop_must_be_registered_before_it_beats() -> None:
    monitor = LoopMonitor()
    with pytest.raises(KeyError, match="never registered"):
        monitor.beat("core")


def test_a_loop_that_ends_on_purpose_unregisters() -> None:
    clock = FakeClock()
    monitor = LoopMonitor(clock)
    monitor.register("core")
    monitor.register("replay")
    monitor.unregister("replay")
    clock.now += 30
    assert monitor.stalled(20) == {"core": 30}
    assert monitor.loops == ("core",)


def test_without_systemd_nothing_is_sent_but_stalls_are_still_logged() -> None:
    clock = FakeClock()
    monitor = LoopMonitor(clock)
    monitor.register("core")
    health = Health(monitor, environ={}, stall_s=20)
    assert not health.notifier.enabled
    assert not health.watchdog_enabled
    assert health.interval_s == 5
    assert health.notifier.send("READY=1") is False
    clock.now += 21
    with structlog.testing.capture_logs() as logs:
        assert not health.check()
    assert [e["event"] for e in logs] == ["health.loop_stalled"]
    health.start()  # the thread runs and stops cleanly with no socket
    health.stop()


def test_a_configured_interval_never_exceeds_what_systemd_expects() -> None:
    env = {"WATCHDOG_USEC": "4000000"}  # systemd: pet at least every 2 s
    assert Health(LoopMonitor(), RecordingNotifier(), interval_s=5, environ=env).interval_s == 2
    assert Health(LoopMonitor(), RecordingNotifier(), interval_s=1, environ=env).interval_s == 1


def test_a_lost_notify_socket_is_counted_and_logged_once_per_streak() -> None:
    notifier = SdNotifier(f"/nonexistent-{os.getpid()}/notify")
    with structlog.testing.capture_logs() as logs:
        assert notifier.send("WATCHDOG=1") is False
        assert notifier.send("WATCHDOG=1") is False
    assert notifier.failures == 2
    assert [e["event"] for e in logs] == ["health.notify_failed"]


def test_a_malformed_assignment_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        SdNotifier("@x").send("READY=1\nWATCHDOG=1")
    with pytest.raises(ValueError):
        SdNotifier("@x").send("READY")


# -- environment parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@sd-notify", "\0sd-notify"),
        ("", None),
        (None, None),
        ("@", None),
        ("vsock:2:1234", None),
        ("relative/path", None),
    ],
)
def test_notify_socket_address(value: str | None, address: str | None) -> None:
    assert notify_address(value) == address


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_env(env: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval_s(env, pid=4242) == interval


def test_status_line_names_uplink_and_backlog() -> None:
    assert status_line("connected", 0) == "uplink connected, backlog 0"
    assert status_line("offline", 1234, 3600) == "uplink offline, backlog 1234 (oldest 3600 s)"
    assert status_line("connected", 0, 5) == "uplink connected, backlog 0"
