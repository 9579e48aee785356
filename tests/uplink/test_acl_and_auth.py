"""Broker-side authorisation: ACL refusals (PUBACK 0x87), TLS identities, passwords, 3.1.1."""

from __future__ import annotations

import json

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from rules.inputs import UplinkRecovered, UplinkTrouble
from tests.support.broker import DEVICE_ACL
from tests.uplink.rig import broker_config, draft, make_rig, topic, wait_until

# The device may publish everything of its own except env telemetry: a broker ACL
# mistake of the kind the warning exists for.
ACL_WITHOUT_ENV = """\
pattern write cabinet/+/%u/evt/access
pattern write cabinet/+/%u/evt/alarm
pattern write cabinet/+/%u/status
pattern read cabinet/+/%u/cmd/#
"""


def test_refused_events_stay_unsent_warn_and_go_out_once_the_acl_is_fixed(
    tmp_path, make_broker, recorder
):
    broker = make_broker(tls=True, acl=ACL_WITHOUT_ENV)
    rec = recorder(broker, topic("evt/#"))
    rig = make_rig(
        tmp_path / "state",
        broker_config(broker, tls=True),
        fault_after_s=0.5,
        fault_min_refusals=2,
        retry_min_s=0.2,
        retry_max_s=0.4,
    )
    rig.uplink.start()
    try:
        sent = rig.emit(
            draft("access.granted"),
            draft("env.reading", voc_ppb=5),
            draft("access.granted"),
            draft("env.reading", voc_ppb=6),
            draft("alarm.raised", "alarm", alarm="a", kind="leak"),
        )
        refused = {e.seq for e in sent if e.type == "env.reading"}
        wait_until(
            lambda: any(isinstance(i, UplinkTrouble) for i in rig.inputs()),
            10,
            "the uplink warning",
        )
        fault = next(i for i in rig.inputs() if isinstance(i, UplinkTrouble))
        assert fault.detail.startswith("publish_not_authorized")
        assert {e.seq for e in rig.outbox.unsent()} == refused  # not marked, nothing lost
        got = {json.loads(m.payload)["seq"] for m in rec.snapshot()}
        assert got == {e.seq for e in sent} - refused
        stats = rig.uplink.stats()
        assert stats["failed"] >= 4 and stats["refused_pending"] == 2
        assert rig.uplink.state == "connected"  # a refusal is not a reason to drop the link

        broker.acl = DEVICE_ACL  # the operator fixes the ACL; same ports
        broker.restart(graceful=True)
        wait_until(lambda: rig.outbox.stats().unsent == 0, 15, "refused events delivered")
        wait_until(
            lambda: any(isinstance(i, UplinkRecovered) for i in rig.inputs()),
            5,
            "the warning cleared",
        )
        assert refused <= {json.loads(m.payload)["seq"] for m in rec.snapshot()}
    finally:
        rig.close()


def test_a_certificate_of_another_device_cannot_publish_as_this_one(
    tmp_path, make_broker, recorder
):
    broker = make_broker(tls=True, acl=DEVICE_ACL)
    rec = recorder(broker, topic("evt/#"))
    intruder = broker.client_cert("cab-2")  # a valid certificate, but CN=cab-2
    cfg = broker_config(broker, tls=True, cert_file=intruder.cert, key_file=intruder.key)
    rig = make_rig(tmp_path / "state", cfg, retry_min_s=0.2, retry_max_s=0.4)
    rig.uplink.start()
    try:
        rig.emit(draft(), draft())
        wait_until(lambda: rig.uplink.stats()["failed"] >= 2, 10, "0x87 refusals")
        assert rig.outbox.stats().unsent == 2 and rec.snapshot() == []
    finally:
        rig.close()


def test_password_login_and_mqtt_311_fallback(tmp_path, make_broker, recorder):
    broker = make_broker(tls=False, passwords={"cab-1": "s3cret"})
    rec = recorder(broker, topic("#"))
    secret = tmp_path / "broker.pass"
    secret.write_text("s3cret\n")
    cfg = broker_config(
        broker, url=broker.password_url, username="cab-1", password_file=secret, protocol="3.1.1"
    )
    rig = make_rig(tmp_path / "state", cfg)
    rig.uplink.start()
    try:
        rig.emit(*[draft() for _ in range(20)])
        wait_until(lambda: rig.outbox.stats().unsent == 0, 10, "sent over 3.1.1")
        events = [json.loads(m.payload)["seq"] for m in rec.snapshot() if "/evt/" in m.topic]
        assert events == list(range(1, 21))
    finally:
        rig.close()


def test_a_wrong_password_never_connects_and_keeps_everything(tmp_path, make_broker):
    broker = make_broker(tls=False, passwords={"cab-1": "s3cret"})
    secret = tmp_path / "broker.pass"
    secret.write_text("wrong\n")
    cfg = broker_config(broker, url=broker.password_url, username="cab-1", password_file=secret)
    rig = make_rig(tmp_path / "state", cfg)
    rig.uplink.start()
    try:
        rig.emit(draft())
        first = rig.uplink.progress
        wait_until(lambda: rig.uplink.progress > first + 2, 5, "the loop keeps running")
        assert rig.uplink.state != "connected" and rig.outbox.stats().unsent == 1
    finally:
        rig.close()


def test_a_refused_command_subscription_is_logged_and_the_cabinet_is_not_command_ready(
    tmp_path, make_broker
):
    """A SUBACK that refuses the cmd filter: no command can arrive, so say so loudly.

    mosquitto's ACL file grants every subscription (it only withholds deliveries), so
    the refusal is the SUBACK as paho hands it to the callback, on a connected uplink.
    """
    broker = make_broker(tls=True, acl=DEVICE_ACL)
    rig = make_rig(tmp_path / "state", broker_config(broker, tls=True))
    rig.uplink.start()
    try:
        wait_until(lambda: rig.uplink.commands_ready, 10, "the SUBACK")
        refusal = ReasonCode(PacketTypes.SUBACK, "Not authorized")
        with structlog.testing.capture_logs() as logs:
            rig.uplink._on_subscribe(None, None, 99, [refusal], None)
        assert [e["event"] for e in logs] == ["uplink.commands_refused"]
        assert logs[0]["reasons"] == ["Not authorized"]
    finally:
        rig.close()


def test_a_granted_command_subscription_makes_the_cabinet_command_ready(tmp_path, make_broker):
    broker = make_broker(tls=True, acl=DEVICE_ACL)
    rig = make_rig(tmp_path / "state", broker_config(broker, tls=True))
    rig.uplink.start()
    try:
        wait_until(lambda: rig.uplink.commands_ready, 10, "the SUBACK")
        broker.stop()
        wait_until(lambda: not rig.uplink.commands_ready, 10, "not ready once the link is lost")
    finally:
        rig.close()
