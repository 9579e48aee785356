"""Judging one MQTT message before anything is stored (sans-I/O).

`judge(topic, payload, registry, received_ms)` says what a message is:
- `Verified`: an envelope of a registered device, on that device's topic, in canonical
  form, whose Ed25519 signature verifies with the registered key (agent.wire);
- `Presence`: a status birth or Last Will of a registered device (unsigned: it only
  moves the online flag, and a birth announcing another key is refused);
- `Rejected` with the reason, for the quarantine: malformed, too large, unknown device,
  wrong device (the topic names another cabinet), wrong site, topic mismatch, not
  canonical, bad signature (forged, or modified after signing).
What needs the stored record (duplicates, forks, chain links) is decided by
central.store.recording, in the transaction that stores the envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agent.wire import (
    ChainVerifier,
    Failure,
    Malformed,
    WireError,
    WrongDevice,
    category,
    parse_json_object,
)
from central.registry import Device
from central.store.recording import Presence, Rejected, Verified

MAX_PAYLOAD = 64 * 1024  # an envelope is well under 4 KiB; a stocktake of 100 slots < 16 KiB

Judgement = Verified | Rejected | Presence


def split_topic(topic: str) -> tuple[str, str, str, str] | None:
    """(site, device, kind, category) of `{prefix}/{site}/{device}/evt/{cat}` or `.../status`."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[3] == "evt":
        return parts[1], parts[2], "evt", parts[4]
    if len(parts) == 4 and parts[3] == "status":
        return parts[1], parts[2], "status", ""
    return None


def judge(topic: str, payload: bytes, devices: Mapping[str, Device], received_ms: int) -> Judgement:
    def reject(reason: str, device: str | None = None, seq: int | None = None) -> Rejected:
        return Rejected(reason, payload, topic, received_ms, device, seq)

    where = split_topic(topic)
    if where is None:
        return reject("not an event or status topic")
    site, topic_device, kind, cat = where
    if len(payload) > MAX_PAYLOAD:
        return reject(f"too large: {len(payload)} bytes", topic_device)
    if kind == "status":
        return _status(payload, site, topic_device, devices, received_ms, reject)
    # agent.wire's verifier, stateless half only: strict parse, device, signature. The
    # chain half (links, forks) needs the stored record: central.store.recording.
    known = devices.get(topic_device)
    if known is None:
        return reject("unknown device: not in the registry", topic_device, _claimed(payload))
    checked = ChainVerifier(known.pubkey, topic_device).authenticate(payload)
    if isinstance(checked, WrongDevice):
        why = f"wrong device: topic of {topic_device!r}, envelope of {checked.claimed!r}"
        return reject(why, topic_device, checked.seq)
    if isinstance(checked, Failure):
        kind = "malformed" if isinstance(checked, Malformed) else "forged or modified"
        return reject(f"{kind}: {checked}", topic_device, checked.seq)
    env = checked.fields if isinstance(checked.fields, dict) else dict(checked.fields)
    seq = checked.seq
    if known.site != site:
        return reject(f"wrong site: {site!r}, the registry says {known.site!r}", topic_device, seq)
    if category(str(env["type"])) != cat:
        return reject(f"topic mismatch: {env['type']} on evt/{cat}", topic_device, seq)
    if checked.payload != payload:
        return reject("not in canonical form (the chain hashes canonical bytes)", topic_device, seq)
    return Verified(env, checked.payload, checked.hash, topic, received_ms)


def _claimed(payload: bytes) -> int | None:
    """The seq a payload claims, for the quarantine row, if it says one at all."""
    try:
        seq = parse_json_object(payload).get("seq")
    except WireError:
        return None
    return seq if type(seq) is int else None


def _status(
    payload: bytes,
    site: str,
    device: str,
    devices: Mapping[str, Device],
    received_ms: int,
    reject: Callable[..., Rejected],
) -> Rejected | Presence:
    try:
        body = parse_json_object(payload)
    except WireError as exc:
        return reject(f"malformed status: {exc}", device)
    if not isinstance(body, dict) or body.get("state") not in ("online", "offline"):
        return reject("malformed status: no state online/offline", device)
    known = devices.get(device)
    if known is None:
        return reject("unknown device: not in the registry", device)
    if body.get("device", device) != device:
        return reject(f"wrong device: status of {body.get('device')!r} on {device}'s topic", device)
    if known.site != site:
        return reject(f"wrong site: {site!r}, the registry says {known.site!r}", device)
    pubkey = body.get("pubkey")
    if body["state"] == "online" and pubkey is not None and pubkey != known.pubkey_text:
        return reject("status announces a key other than the registered one", device)
    boot, last_seq = body.get("boot"), body.get("last_seq")
    return Presence(
        device,
        body["state"] == "online",
        boot if type(boot) is int else None,
        last_seq if type(last_seq) is int and last_seq >= 0 else None,
        received_ms,
    )
