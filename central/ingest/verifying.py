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

import json
from collections.abc import Callable, Mapping

from agent.wire import (
    WireError,
    canonical,
    category,
    chain_hash,
    parse_envelope,
    parse_json,
    parse_topic,
    verify_envelope,
)
from central.registry import Device
from central.store.recording import Presence, Rejected, Verified

MAX_PAYLOAD = 64 * 1024  # an envelope is well under 4 KiB; a stocktake of 100 slots < 16 KiB

Judgement = Verified | Rejected | Presence


def split_topic(topic: str) -> tuple[str, str, str, str] | None:
    """(site, device, kind, category) of `{prefix}/{site}/{device}/evt/{cat}` or `.../status`.

    The prefix is whatever the subscription matched; the contract's reader does the rest.
    """
    where = parse_topic(topic.split("/", 1)[0], topic)
    if where is None or where.kind == "cmd":
        return None
    return where.site, where.device, where.kind, where.name or ""


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
    try:
        env = parse_envelope(payload)
    except WireError as exc:
        return reject(f"malformed: {exc}", topic_device)
    device, seq = str(env["device"]), int(env["seq"])
    if device != topic_device:
        return reject(
            f"wrong device: topic of {topic_device!r}, envelope of {device!r}", device, seq
        )
    known = devices.get(device)
    if known is None:
        return reject("unknown device: not in the registry", device, seq)
    if known.site != site:
        return reject(f"wrong site: {site!r}, the registry says {known.site!r}", device, seq)
    if category(str(env["type"])) != cat:
        return reject(f"topic mismatch: {env['type']} on evt/{cat}", device, seq)
    try:
        verify_envelope(env, known.pubkey)
    except WireError as exc:
        return reject(f"forged or modified: {exc}", device, seq)
    exact = canonical(env)
    if exact != payload:
        return reject("not in canonical form (the chain hashes canonical bytes)", device, seq)
    return Verified(env, exact, chain_hash(exact), topic, received_ms)


def _status(
    payload: bytes,
    site: str,
    device: str,
    devices: Mapping[str, Device],
    received_ms: int,
    reject: Callable[..., Rejected],
) -> Rejected | Presence:
    try:
        body = parse_json(payload)
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


def describe(payload: bytes) -> str:
    """A short, safe text of a payload for logs (never the whole of it)."""
    text = payload[:120].decode("utf-8", "replace")
    return json.dumps(text, ensure_ascii=False)
