"""`cabinet-central` as an operator runs it: real mosquitto, real child processes."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from central.store import Store
from central.store.schema import events
from tests.central.cabinet import FakeCabinet, forge, write_registry
from tests.central_service.rig import CentralRig, FakeFleet, alive, descendants, wait_until
from tests.support.broker import Broker, free_port

pytestmark = pytest.mark.realpart


@pytest.fixture
def broker(make_broker: Callable[..., Broker]) -> Broker:
    return make_broker(tls=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture
def rigged(
    tmp_path: Path, broker: Broker, store_url: str
) -> Iterator[tuple[CentralRig, FakeFleet, list[FakeCabinet], Store]]:
    """Three fake cabinets and the centre, on SQLite and on PostgreSQL (store_url)."""
    cabinets = [FakeCabinet(device=f"cab-{i}") for i in range(3)]
    rig = CentralRig(tmp_path, broker.url, store_url, cabinets)
    fleet = FakeFleet(broker.host, broker.port, cabinets, rig.central_pub)
    store = Store.open(store_url)
    yield rig, fleet, cabinets, store
    rig.stop_all()
    fleet.close()
    store.close()


def _health(listen: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{listen}/api/health", timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _stored(store: Store, device: str) -> int:
    try:
        return len(store.events(device, limit=10_000))
    except Exception:  # the serve process has not created the schema yet
        return 0


def test_serve_runs_with_nothing_but_a_registry_and_a_key(
    tmp_path: Path, broker: Broker, sqlite_url: str
) -> None:
    rig = CentralRig(tmp_path, broker.url, sqlite_url, [FakeCabinet()])
    checked = rig.cli("check-config")
    assert checked.returncode == 0, checked.stderr
    assert "OK (1 devices, database sqlite" in checked.stdout
    listen = f"127.0.0.1:{free_port()}"
    try:
        rig.serve(listen=listen)
        wait_until(lambda: _ok(listen), 20, "/api/health to answer ok")
        assert _health(listen) == (200, {"ok": True, "ingest": "connected", "database": "ok"})
    finally:
        rig.stop_all()
    assert rig.processes[0].returncode == 0, rig.log_text()
    assert (tmp_path / "state" / "central.db").exists() is False  # CENTRAL_DATABASE_URL won


def _state(store: Store, fleet: FakeFleet) -> str:
    cabinets = [(c.device, c.last_seq, c.missing) for c in store.cabinets()]
    with Store.open(store.url) as fresh:
        again = [(c.device, c.last_seq, c.missing) for c in fresh.cabinets()]
    return f"cabinets {cabinets} (fresh: {again}), resends {fleet.resends()[-5:]}"


def _ok(listen: str) -> bool:
    try:
        return _health(listen)[0] == 200
    except OSError:
        return False


def test_check_config_names_the_file_line_and_key_and_exits_78(
    tmp_path: Path, broker: Broker, sqlite_url: str
) -> None:
    rig = CentralRig(tmp_path, broker.url, sqlite_url, [FakeCabinet()], extra="")
    rig.config.write_text('time_zone = "Mars/Olympus"\n' + rig.config.read_text())
    done = rig.cli("check-config")
    assert done.returncode == 78
    assert f"{rig.config}:1: time_zone: unknown time zone" in done.stderr
    assert "Traceback" not in done.stderr
    rig.config.write_text(rig.config.read_text().replace("central.key", "missing.key"))
    rig.config.write_text(rig.config.read_text().replace('time_zone = "Mars/Olympus"\n', ""))
    done = rig.cli("check-config")
    assert done.returncode == 78 and "missing.key: key file not found" in done.stderr


def test_users_and_tokens_from_the_command_line(
    tmp_path: Path, broker: Broker, sqlite_url: str
) -> None:
    rig = CentralRig(tmp_path, broker.url, sqlite_url, [FakeCabinet()])
    added = rig.cli(
        "user",
        "add",
        "zhang",
        "--person",
        "p-1001",
        "--role",
        "keeper",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert added.returncode == 0, added.stderr
    token = rig.cli("token", "create", "zhang")
    assert token.returncode == 0 and token.stdout.startswith("cct_")
    with Store.open(sqlite_url) as store:
        user = store.user_for_token(token.stdout.strip())
        assert user is not None and user.person == "p-1001"
        assert store.check_password("zhang", "correct horse battery") == user
    bad = rig.cli(
        "user",
        "add",
        "li",
        "--person",
        "p-2",
        "--role",
        "keeper",
        "--password-stdin",
        stdin="short\n",
    )
    assert bad.returncode == 1 and "password" in bad.stderr and "Traceback" not in bad.stderr
    assert rig.cli("token", "create", "ghost").returncode == 1


def test_events_are_verified_and_stored_and_forgeries_are_quarantined(rigged) -> None:  # type: ignore[no-untyped-def]
    rig, fleet, cabinets, store = rigged
    rig.serve_ready()
    cab = cabinets[0]
    envs = [
        fleet.emit(cab, "system.heartbeat", {"uptime_s": i, "outbox_unsent": 0}) for i in range(5)
    ]
    thief = FakeCabinet(device=cab.device)
    forged = thief.emit("door.opened", {})
    fleet.publish(cab, envs[0], envs[2], envs[1])  # out of order
    fleet.publish_raw(cab.topic(forged), forged.payload)
    fleet.publish_raw(cab.topic(envs[3]), forge(envs[3], data={"uptime_s": 999}))
    fleet.publish(cab, envs[3], envs[4], envs[4])
    wait_until(lambda: _stored(store, cab.device) == 5, 20, "5 stored events")
    wait_until(lambda: len(store.quarantine()) == 2, 10, "2 quarantined")
    assert store.events(cab.device) == [e.payload for e in envs]
    assert {q.reason for q in store.quarantine()} == {"forged or modified: bad signature"}
    wait_until(lambda: store.cabinets()[0].last_seq == 5, 5, "the projection to reach seq 5")
    assert '"quarantined"' in rig.log_text() and forged.payload.decode() not in rig.log_text()


def test_a_gap_is_asked_for_with_resend_and_filled(rigged) -> None:  # type: ignore[no-untyped-def]
    rig, fleet, cabinets, store = rigged
    rig.serve_ready()
    cab = cabinets[1]
    envs = [fleet.emit(cab, "system.heartbeat", {"uptime_s": i}) for i in range(6)]
    fleet.publish(cab, envs[0], envs[4], envs[5])  # 2..4 "lost"
    wait_until(
        lambda: _stored(store, cab.device) == 6,
        20,
        lambda: (
            f"the gap filled by resend ({_stored(store, cab.device)} stored, "
            f"resends {fleet.resends()}); serve's log:\n{rig.log_text()}"
        ),
    )
    assert (cab.device, 2, 4) in fleet.resends()
    wait_until(
        lambda: [c.last_seq for c in store.cabinets() if c.device == cab.device] == [6],
        5,
        "the projection",
    )


def test_two_serve_processes_share_the_stream_and_killing_one_loses_nothing(rigged) -> None:  # type: ignore[no-untyped-def]
    rig, fleet, cabinets, store = rigged
    first, second = rig.serve_ready("one"), rig.serve_ready("two")
    per_cabinet = 150
    for i in range(per_cabinet):
        for cab in cabinets:
            fleet.publish(cab, fleet.emit(cab, "system.heartbeat", {"uptime_s": i}))
        if i == per_cabinet // 3:
            helpers = descendants(first.pid)  # its fork server and judging workers
            assert helpers, "serve judges in a worker process ([ingest] workers = 1)"
            first.send_signal(signal.SIGKILL)

    # What went to the killed process after the last envelope of a cabinet shows as a gap
    # only when the cabinet says more: it does, with a heartbeat every minute (here 0.5 s).
    def complete() -> bool:
        if all(_stored(store, c.device) == len(c.envelopes) for c in cabinets):
            return True
        time.sleep(0.5)
        for cab in cabinets:
            fleet.publish(cab, fleet.emit(cab, "system.heartbeat", {"uptime_s": 10**6}))
        return False

    wait_until(complete, 60, lambda: f"every event of every cabinet stored: {_state(store, fleet)}")
    for cab in cabinets:
        assert store.events(cab.device, limit=10_000) == [e.payload for e in cab.envelopes]
    assert store.quarantine() == []
    assert second.poll() is None
    # the killed process's workers go with it: nothing is left holding memory
    wait_until(lambda: not (alive(helpers)), 10, "its workers to exit")
    with store.connection() as conn:  # each (device, seq) exactly once
        assert conn.execute(select(func.count()).select_from(events)).scalar() == sum(
            len(c.envelopes) for c in cabinets
        )


def test_a_cabinet_added_to_the_registry_while_serving_is_believed_from_then_on(
    tmp_path: Path, broker: Broker, sqlite_url: str
) -> None:
    known, newcomer = FakeCabinet(device="cab-known"), FakeCabinet(device="cab-new")
    rig = CentralRig(tmp_path, broker.url, sqlite_url, [known])
    fleet = FakeFleet(broker.host, broker.port, [known, newcomer], rig.central_pub)
    try:
        rig.serve_ready()
        with Store.open(sqlite_url) as store:
            fleet.publish(newcomer, fleet.emit(newcomer, "system.started", {}))
            wait_until(lambda: len(store.quarantine()) == 1, 20, "the stranger quarantined")
            assert store.quarantine()[0].reason == "unknown device: not in the registry"
            write_registry(rig.registry, known, newcomer)  # cabinetctl device add
            wait_until(
                lambda: "cab-new" in {c.device for c in store.cabinets()},
                20,
                "the registry re-read",
            )
            fleet.publish(newcomer, newcomer.envelopes[0])  # its resend of seq 1
            wait_until(lambda: _stored(store, "cab-new") == 1, 20, "the newcomer's seq 1")
    finally:
        rig.stop_all()
        fleet.close()
