"""Commands over a real broker: the centre publishes on .../cmd/<name>, the core gets inputs."""

from __future__ import annotations

import json
import random
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import wire
from agent.commands import CommandVerifier, load_persisted_policy, persist_policy
from agent.uplink import Uplink
from rules.command_args import Ack
from rules.inputs import CommandReceived, CommandRejected, PolicyLoaded
from tests.support.broker import DEVICE_ACL, Broker
from tests.uplink.rig import DEVICE, Rig, broker_config, draft, make_rig, topic, wait_until


class Centre:
    """The central side on the broker's plain listener."""

    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"centre-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, name: str, payload: bytes) -> None:
        self.client.publish(topic(f"cmd/{name}"), payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _connected_rig(tmp_path, make_broker) -> tuple[Broker, Rig, Centre]:
    broker = make_broker(tls=True, acl=DEVICE_ACL)
    rig = make_rig(tmp_path / "state", broker_config(broker, tls=True))
    rig.uplink.start()
    wait_until(lambda: rig.uplink.commands_ready, 10, "connected and subscribed to commands")
    return broker, rig, Centre(broker)


def _signed_policy(rig: Rig, version: int) -> dict:
    inner = {"version": version, "issued_at": "2026-11-22T08:00:00Z", "cabinet": DEVICE}
    return wire.sign_policy(inner, rig.central_key)


def test_policy_command_is_verified_persisted_and_replay_refused(tmp_path, make_broker):
    _, rig, centre = _connected_rig(tmp_path, make_broker)
    try:
        signed = _signed_policy(rig, 5)
        payload = rig.command("policy", {"policy": signed}, nonce="nonce-policy-5")
        centre.send("policy", payload)
        wait_until(lambda: len(rig.inputs()) == 1, 5, "the policy input")
        loaded = rig.inputs()[0]
        assert isinstance(loaded, PolicyLoaded) and loaded.policy.version == 5
        # What the daemon does with the rules' PersistPolicy effect, then a restart:
        persist_policy(rig.config.state_dir, loaded.document)
        policy, document = load_persisted_policy(rig.config.state_dir, rig.central_key.public)
        assert policy.version == 5 and document == signed

        centre.send("policy", payload)  # replayed
        centre.send("ack", rig.command("ack", {"alarm": "a-1", "by": "p-1"}, expires_in_ms=-1))
        centre.send("ack", rig.command("ack", {"alarm": "a-1", "by": "p-1"}, device="cab-2"))
        centre.send(
            "ack", rig.command("ack", {"alarm": "a-1", "by": "p-1"}, key=wire.SigningKey.generate())
        )
        centre.send("snapshot", rig.command("snapshot", {}))
        wait_until(lambda: len(rig.inputs()) == 6, 5, "five more inputs")
        reasons = [i.reason for i in rig.inputs()[1:5]]
        assert reasons == ["replayed_nonce", "expired", "wrong_device", "bad_signature"]
        assert rig.inputs()[1] == CommandRejected("policy", "nonce-policy-5", "replayed_nonce")
        assert isinstance(rig.inputs()[5], CommandReceived)
    finally:
        centre.close()
        rig.close()


def test_a_barrage_of_malformed_commands_never_stops_publishing(tmp_path, make_broker, recorder):
    broker, rig, centre = _connected_rig(tmp_path, make_broker)
    rec = recorder(broker, topic("evt/#"))
    rng = random.Random(7)
    junk = [
        b"",
        b"\x00\xff\xfe",
        b"not json",
        b"[]",
        b"{}",
        b"null",
        b'{"v":1}',
        b"[" * 50_000,
        b"A" * 200_000,
        json.dumps({"v": "1", "args": []}).encode(),
        ('{"a":' * 5000 + "1" + "}" * 5000).encode(),
    ] + [rng.randbytes(rng.randrange(1, 2000)) for _ in range(40)]
    try:
        for i, payload in enumerate(junk):
            centre.send(rng.choice(["ack", "policy", "resend", "bogus"]), payload)
            if i % 10 == 0:
                rig.emit(draft())
        rig.emit(draft("door.closed"))
        wait_until(lambda: len(rig.inputs()) == len(junk), 15, "a rejection for each")
        assert all(isinstance(i, CommandRejected) for i in rig.inputs())
        wait_until(lambda: rig.outbox.stats().unsent == 0, 10, "events still flowing")
        assert rig.uplink.state == "connected" and rig.uplink.stats()["errors"] == 0
        assert len(rec.snapshot()) == rig.outbox.last_seq
    finally:
        centre.close()
        rig.close()


def test_resend_republishes_a_range_from_the_outbox(tmp_path, make_broker, recorder):
    broker = make_broker(tls=False)
    rec = recorder(broker, topic("evt/#"))
    rig = make_rig(tmp_path / "state", broker_config(broker))
    rig.uplink.start()
    try:
        rig.emit(*[draft() for _ in range(1200)])
        wait_until(lambda: rig.outbox.stats().unsent == 0, 15, "first pass")
        rec.wait_for(lambda: len(rec.messages) == 1200, 10, "first pass delivered")
        rig.uplink.republish(100, 1150)  # what the core does for a `resend` command
        rec.wait_for(lambda: len(rec.messages) == 1200 + 1051, 15, "the resent range")
        again = [json.loads(m.payload)["seq"] for m in rec.snapshot()[1200:]]
        assert again == list(range(100, 1151))
        assert [m.payload for m in rec.snapshot()[1200:1201]] == [
            rig.outbox.range(100, 100)[0].payload
        ]
        assert rig.uplink.stats()["republished"] == 1051
    finally:
        rig.close()


def test_a_command_sent_while_the_agent_is_offline_arrives_when_it_reconnects(
    tmp_path, make_broker
):
    _, rig, centre = _connected_rig(tmp_path, make_broker)
    try:
        rig.uplink.stop(timeout=5)  # offline; the broker keeps the session (expiry > 0)
        centre.send("ack", rig.command("ack", {"alarm": "a-9", "by": "p-1"}, nonce="while-offline"))
        back = Uplink(
            rig.config,
            rig.outbox,
            pubkey="k",
            version="test",
            boot=rig.outbox.boot,
            post=rig.post,
            verifier=CommandVerifier(DEVICE, rig.central_key.public, rig.nonces),
        )
        back.start()
        wait_until(lambda: len(rig.inputs()) == 1, 10, "the queued command")
        assert rig.inputs()[0] == CommandReceived(Ack(alarm="a-9", by="p-1"), "while-offline")
        back.stop(timeout=5)
    finally:
        centre.close()
        rig.outbox.close()
        rig.nonces.close()
