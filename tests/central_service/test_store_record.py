"""The stored record: byte-exact, idempotent, chained, and loud about what fails."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agent.wire import canonical
from central.store import Store
from central.store.schema import metadata
from tests.central.cabinet import FakeCabinet, forge
from tests.central_service.conftest import Feed

Feeder = Callable[..., Feed]


def test_migrating_twice_changes_nothing_and_matches_the_declared_tables(store: Store) -> None:
    store.migrate()
    with store.connection() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_an_event_is_stored_byte_exact_once_however_often_it_arrives(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    env = cab.emit("system.started", {"version": "1", "boot": 1, "resumed_from_seq": 0})
    f = feed(cab)
    assert f.send(cab, env, env, env) == ["stored", "duplicate", "duplicate"]
    assert store.events(cab.device) == [env.payload]
    assert store.cabinets()[0].last_seq == 1


def test_a_forged_and_a_modified_event_are_quarantined_with_the_reason(
    store: Store, feed: Feeder
) -> None:
    cab, thief = FakeCabinet(), FakeCabinet()  # same device id, another key
    f = feed(cab)
    real = cab.emit("door.opened", {"session": None})
    forged = thief.emit("door.opened", {"session": None})
    modified = forge(real, data={"session": "s-evil"})
    f.raw(cab.topic(real), forged.payload)
    f.raw(cab.topic(real), modified)
    assert store.events(cab.device) == []
    reasons = sorted(q.reason for q in store.quarantine())
    assert reasons == ["forged or modified: bad signature"] * 2
    assert {q.seq for q in store.quarantine()} == {1}
    assert store.quarantine()[0].device == cab.device


def test_messages_of_the_wrong_device_site_or_topic_are_quarantined(
    store: Store, feed: Feeder
) -> None:
    a, b = FakeCabinet(device="cab-a"), FakeCabinet(device="cab-b")
    stranger = FakeCabinet(device="cab-x")
    f = feed(a, b)
    env = a.emit("door.opened", {"session": None})
    f.raw(b.topic(env).replace("/cab-a/", "/cab-b/"), env.payload)
    f.raw(a.topic(env).replace("lab/", "other/"), env.payload)
    f.raw(a.topic(env).replace("/evt/door", "/evt/alarm"), env.payload)
    f.raw(stranger.topic(stranger.emit("door.opened", {})), stranger.envelopes[0].payload)
    f.raw(a.topic(env), b"{not json")
    f.raw(a.topic(env), env.payload.replace(b'"data"', b' "data"'))
    reasons = [q.reason.split(":")[0] for q in store.quarantine()]
    assert sorted(reasons) == sorted(
        [
            "wrong device",
            "wrong site",
            "topic mismatch",
            "unknown device",
            "malformed",
            "not in canonical form (the chain hashes canonical bytes)",
        ]
    )
    assert store.events("cab-a") == []


def test_the_same_bad_message_redelivered_is_quarantined_once(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    env = cab.emit("door.opened", {})
    for _ in range(3):
        f.raw(cab.topic(env), b"garbage")
    assert len(store.quarantine()) == 1


def test_a_second_signed_version_of_a_stored_seq_is_a_fork_and_the_first_stays(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    first = cab.emit("door.opened", {})
    cab.envelopes.clear()
    second = cab.emit("door.closed", {})
    assert f.send(cab, first, second) == ["stored", "quarantined"]
    assert store.events(cab.device) == [first.payload]
    assert store.quarantine()[0].reason.startswith("fork")


def test_a_link_that_does_not_chain_is_quarantined_whichever_neighbour_came_first(
    store: Store, feed: Feeder
) -> None:
    cab, other = FakeCabinet(), FakeCabinet()
    other.key = cab.key  # the device's own key, but another history
    f = feed(cab)
    for _ in range(3):
        cab.emit("system.heartbeat", {"uptime_s": 1, "outbox_unsent": 0})
        other.emit("system.heartbeat", {"uptime_s": 2, "outbox_unsent": 0})
    # seq 3 first, then another history's seq 2: its hash is not what seq 3 names
    assert f.send(cab, cab.envelopes[2], other.envelopes[1]) == ["stored", "quarantined"]
    assert "does not link" in store.quarantine()[0].reason
    assert f.send(cab, cab.envelopes[0], cab.envelopes[1]) == ["stored", "stored"]
    assert store.cabinets()[0].last_seq == 3


def test_out_of_order_events_wait_behind_a_gap_and_are_projected_when_it_fills(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    cab.emit("system.started", {"version": "1", "boot": 1, "resumed_from_seq": 0})
    cab.emit("door.opened", {"session": None})
    cab.emit("alarm.raised", {"alarm": "A1-1", "kind": "door_forced"})
    f.send(cab, cab.envelopes[0], cab.envelopes[2])
    (cabinet,) = store.cabinets()
    assert cabinet.last_seq == 1 and cabinet.missing == ((2, 2),)
    assert store.alarms() == []  # not shown as fact before the record up to it is whole
    f.send(cab, cab.envelopes[1])
    assert [a.alarm for a in store.alarms()] == ["A1-1"]
    assert store.cabinets()[0].missing == ()


def test_telemetry_the_device_attests_it_shed_does_not_block_the_record(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    cab.emit("system.started", {"version": "1", "boot": 1, "resumed_from_seq": 0})
    cab.emit("env.reading", {"voc_ppb": 1})
    cab.emit("env.reading", {"voc_ppb": 2})
    cab.emit("system.outbox_dropped", {"count": 2, "from_seq": 2, "to_seq": 3})
    cab.emit("alarm.raised", {"alarm": "A1-1", "kind": "leak"})
    f.send(cab, cab.envelopes[0], cab.envelopes[3], cab.envelopes[4])
    assert store.cabinets()[0].last_seq == 5
    assert len(store.alarms()) == 1


def test_status_birth_and_last_will_say_online_and_an_old_will_does_not_undo_a_birth(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    topic = f"cabinet/{cab.site}/{cab.device}/status"
    f.raw(topic, cab.status("online"))
    assert store.cabinets()[0].online
    old_will = cab.status("offline")
    cab.boot = 2
    f.raw(topic, cab.status("online"))
    f.raw(topic, old_will)
    assert store.cabinets()[0].online and store.cabinets()[0].boot == 2
    f.raw(topic, cab.status("offline"))
    assert not store.cabinets()[0].online


def test_a_birth_announcing_another_key_is_quarantined(store: Store, feed: Feeder) -> None:
    cab, impostor = FakeCabinet(), FakeCabinet()
    f = feed(cab)
    f.raw(f"cabinet/{cab.site}/{cab.device}/status", impostor.status("online"))
    assert not store.cabinets()[0].online
    assert "other than the registered" in store.quarantine()[0].reason


def test_the_change_mark_grows_with_every_ingested_batch(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    before = store.change_mark()
    f.send(cab, cab.emit("door.opened", {}))
    assert store.change_mark() > before


def test_stored_payloads_are_the_canonical_signed_bytes(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    env = cab.emit(
        "access.granted",
        {
            "persons": ["p-1", "p-2"],
            "session": "s1",
            "mode": "local",
            "readers": ["A", "B"],
            "note": "张伟",
        },
    )
    f.send(cab, env)
    assert store.events(cab.device, from_seq=1, limit=10) == [canonical(env.fields)]


def test_cabinetctl_verify_reads_the_central_store_by_its_url(store: Store, feed: Feeder) -> None:
    from central.verify import read_input, verify_input

    cab = FakeCabinet()
    f = feed(cab)
    for _ in range(3):
        f.send(cab, cab.emit("system.heartbeat", {}))
    verdict = verify_input(read_input(store.url), {cab.device: cab.key.public})
    assert verdict.ok and verdict.events == 3, verdict.summary()
    assert not verify_input(read_input(store.url), {}).ok  # an unknown device is a failure
