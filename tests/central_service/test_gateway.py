"""The command gateway against a store (both backends), with the broker replaced by a
cabinet that answers in the store the way the ingest would record its answer."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from agent.wire import SigningKey, check_signature
from central.errors import CentralError
from central.ingest.commands import CommandGateway, CommandNotSent, CommandRefused, UnknownDevice
from central.store import Store
from tests.central.cabinet import FakeCabinet
from tests.central_service.conftest import Feed

Feeder = Callable[..., Feed]
CENTRAL = SigningKey.generate()


def _gateway(store: Store, feed: Feeder, answer: str | None) -> tuple[CommandGateway, list]:  # type: ignore[type-arg]
    cab = FakeCabinet()
    f = feed(cab)
    sent: list[dict] = []  # type: ignore[type-arg]

    def publish(topic: str, payload: bytes) -> None:
        command = json.loads(payload)
        check_signature(command, CENTRAL.public)
        assert topic == f"cabinet/{cab.site}/{cab.device}/cmd/{command['name']}"
        sent.append(command)
        if answer is not None:
            data = {
                "name": command["name"],
                "nonce": command["nonce"],
                "args": command["args"],
                "reason": None if answer == "applied" else answer,
            }
            f.send(
                cab, cab.emit(f"command.{'applied' if answer == 'applied' else 'rejected'}", data)
            )

    return CommandGateway(store, lambda: f.devices, CENTRAL, publish, poll_s=0.01), sent


def test_the_gateway_names_the_logged_in_person_and_returns_the_stored_answer(
    store: Store, feed: Feeder
) -> None:
    gateway, sent = _gateway(store, feed, "applied")
    answer = gateway.send("cab-1", "ack", {"alarm": "A1-1", "by": "someone-else"}, by="p-2001")
    assert (answer.result, answer.reason, answer.seq) == ("applied", None, 1)
    assert sent[0]["args"] == {"alarm": "A1-1", "by": "p-2001"}  # never the caller's `by`
    gateway.send("cab-1", "snapshot", {"by": "x"}, by="p-2001")
    assert sent[1]["args"] == {}  # snapshot takes no `by`


def test_a_rejection_says_why_and_silence_is_a_timeout(store: Store, feed: Feeder) -> None:
    gateway, _ = _gateway(store, feed, "not_authorized")
    assert gateway.send("cab-1", "ack", {"alarm": "A1-1"}, by="p-9").reason == "not_authorized"
    silent, _ = _gateway(store, feed, None)
    answer = silent.send("cab-1", "snapshot", {}, by="p-1", timeout_s=0.2)
    assert (answer.result, answer.reason, answer.seq) == ("timeout", None, None)


def test_the_gateway_fails_with_typed_errors(store: Store, feed: Feeder) -> None:
    gateway, _ = _gateway(store, feed, "applied")
    with pytest.raises(UnknownDevice):
        gateway.send("cab-nowhere", "snapshot", {}, by="p-1")
    with pytest.raises(CommandRefused, match="unknown command"):
        gateway.send("cab-1", "self_destruct", {}, by="p-1")
    with pytest.raises(CommandRefused):
        gateway.send("cab-1", "approve_withdrawal", {"max_mg": 1.5}, by="p-1")  # no floats

    def broker_down(topic: str, payload: bytes) -> None:
        raise CentralError("no connection to the broker")

    offline = CommandGateway(store, gateway.devices, CENTRAL, broker_down)
    with pytest.raises(CommandNotSent, match="no connection"):
        offline.send("cab-1", "snapshot", {}, by="p-1")
