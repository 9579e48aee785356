"""The contract's edges: strict JSON, topics both ways, and the broker client's set-up."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.wire import MalformedJson, Topic, parse_json, parse_topic
from agent.wire.mqtt import BrokerAccess, BrokerSetupError, paho_client
from agent.wire.topics import (
    command_filter,
    command_topic,
    event_filter,
    event_topic,
    status_filter,
    status_topic,
)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b'{"a":1.0}', "floats"),
        (b'{"a":1e3}', "floats"),
        (b'{"a":NaN}', "floats"),
        (b"[-Infinity]", "floats"),
        (b"[" * 40 + b"]" * 40, "nested too deep"),
        (b"[" * 100_000, "nested too deep"),
        (b'"\xff"', "not JSON"),
        ('{"a":1}'.encode("utf-16"), "not JSON"),
        (b"{", "not JSON"),
    ],
)
def test_strict_json_refuses_what_two_readers_could_read_differently(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedJson, match=why):
        parse_json(raw)


def test_strict_json_reads_integers_of_any_size_and_unicode() -> None:
    assert parse_json('{"n":12345678901234567890,"t":"é"}'.encode()) == {
        "n": 12345678901234567890,
        "t": "é",
    }


@given(st.binary(max_size=64))
def test_strict_json_turns_any_bytes_into_a_value_or_a_reason(raw: bytes) -> None:
    with contextlib.suppress(MalformedJson):  # anything else escaping is the failure
        parse_json(raw)


segment = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,11}", fullmatch=True)


@given(segment, segment, segment, st.sampled_from(["door.opened", "alarm.raised", "env.x"]))
def test_every_topic_reads_back_as_what_it_was_built_from(prefix, site, device, event_type):
    category = event_type.split(".")[0]
    assert parse_topic(prefix, event_topic(prefix, site, device, event_type)) == Topic(
        site, device, "evt", category
    )
    assert parse_topic(prefix, status_topic(prefix, site, device)) == Topic(
        site, device, "status", None
    )
    assert parse_topic(prefix, command_topic(prefix, site, device, "ack")) == Topic(
        site, device, "cmd", "ack"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "other/lab/cab-1/evt/door",
        "cabinet/lab/cab-1/evt",
        "cabinet/lab//evt/door",
        "cabinet/lab/cab-1/evt/door/extra",
        "cabinet/lab/cab-1/state",
        "cabinet/lab/cab-1/log/door",
    ],
)
def test_a_topic_outside_the_contract_is_not_read_as_one(topic: str) -> None:
    assert parse_topic("cabinet", topic) is None


def test_filters_cover_every_site_and_device_unless_narrowed() -> None:
    assert event_filter("cabinet") == "cabinet/+/+/evt/+"
    assert status_filter("cabinet", "lab") == "cabinet/lab/+/status"
    assert command_filter("cabinet", "lab", "cab-1") == "cabinet/lab/cab-1/cmd/+"


def test_a_missing_ca_file_is_a_clear_setup_error_not_a_traceback(tmp_path: Path) -> None:
    access = BrokerAccess(tls=True, ca_file=tmp_path / "absent-ca.pem")
    with pytest.raises(BrokerSetupError, match="TLS setup"):
        paho_client("c-1", access)


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    access = BrokerAccess(username="u", password_file=tmp_path / "absent")
    with pytest.raises(BrokerSetupError, match="password file"):
        paho_client("c-1", access)
