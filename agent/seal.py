"""Sealing drafts into envelopes: sign, chain, canonical bytes (DESIGN.md §4.1), fast.

`Sealer` is the outbox's hot path. It produces exactly the bytes of the reference,
`agent.wire.build_envelope` (the contract, shared with `cabinetctl`), with less work
per event; anything unusual goes through the reference itself, and every outbox checks
that the two agree when it opens. tests/torture/test_seal.py holds them to it.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import nacl._sodium
import nacl.bindings
import structlog

from agent.wire import (
    ENVELOPE_VERSION,
    SEVERITIES,
    Envelope,
    SigningKey,
    b64u_decode,
    build_envelope,
)

log = structlog.get_logger("outbox")

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_MAX_DEPTH = 32  # as agent.wire's float check
_B64URL = re.compile(r"[A-Za-z0-9_-]*")  # every prev is a base64url hash


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before it has a seq, a prev and a signature."""

    type: str
    sev: str
    data: Mapping[str, Any]
    ts: int
    mono: int
    clock_ok: bool


class Sealer:
    """Signs and chains drafts into envelopes byte-identical to `wire.build_envelope`.

    The reference canonicalises the whole envelope twice (without and with `sig`),
    checks floats with isinstance/ABC calls and goes through PyNaCl's SignedMessage
    objects: ~55 µs of CPU an event on the project's machine, ~24 of it the signature.
    The envelope's keys and their types are fixed, so its canonical text is a template
    with only `data` to encode and `sig` spliced in where it sorts (... "sev" < "sig" <
    "ts" ...), signed by one raw libsodium call: ~38 µs, and less of it holding the GIL
    that the uplink thread needs. Anything unusual (floats, tuples, non-string keys, odd
    types) goes through the reference, which refuses or handles it exactly as before;
    a canary envelope checks that both paths agree whenever an outbox opens.
    """

    def __init__(self, device: str, boot: int, key: SigningKey) -> None:
        self.device, self.boot, self._key = device, boot, key
        seed = b64u_decode(key.to_text().strip())
        self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
        self._sign = _gil_holding_signer(self._secret) or self._sign_releasing
        self._device_json = _ENCODER.encode(device).encode("utf-8")
        self._type_json: dict[str, bytes] = {}
        self.fast = True
        canary = Draft("system.canary", "info", {"n": [1, {"é": None}], "t": True}, 1, 2, False)
        if self.seal(canary, 7, "p-_7").payload != self._reference(canary, 7, "p-_7").payload:
            self.fast = False  # never expected; correctness first, speed second
            log.error("outbox.fast_seal_disabled", reason="canary envelope differs")

    def seal(self, draft: Draft, seq: int, prev: str) -> Envelope:
        if not (
            self.fast
            and draft.sev in SEVERITIES
            and type(draft.ts) is int
            and type(draft.mono) is int
            and type(draft.clock_ok) is bool
            and type(seq) is int
            and _B64URL.fullmatch(prev)
            and _plain(draft.data, 0)
        ):
            return self._reference(draft, seq, prev)
        type_json = self._type_json.get(draft.type)
        if type_json is None:
            type_json = _ENCODER.encode(draft.type).encode("utf-8")
            if len(self._type_json) < 512:  # the event vocabulary is small
                self._type_json[draft.type] = type_json
        data = dict(draft.data)
        head = b'{"boot":%d,"clock_ok":%s,"data":%s,"device":%s,"mono":%d,"prev":"%s","seq":%d' % (
            self.boot,
            b"true" if draft.clock_ok else b"false",
            _ENCODER.encode(data).encode("utf-8"),
            self._device_json,
            draft.mono,
            prev.encode("ascii"),
            seq,
        )
        head += b',"sev":"%s"' % draft.sev.encode("ascii")
        tail = b'"ts":%d,"type":%s,"v":%d}' % (draft.ts, type_json, ENVELOPE_VERSION)
        signature = self._sign(head + b"," + tail)
        sig = base64.urlsafe_b64encode(signature).rstrip(b"=")
        fields = {
            "v": ENVELOPE_VERSION,
            "device": self.device,
            "boot": self.boot,
            "seq": seq,
            "ts": draft.ts,
            "mono": draft.mono,
            "clock_ok": draft.clock_ok,
            "type": draft.type,
            "sev": draft.sev,
            "data": data,
            "prev": prev,
            "sig": sig.decode("ascii"),
        }
        return Envelope(fields, head + b',"sig":"' + sig + b'",' + tail)

    def _sign_releasing(self, message: bytes) -> bytes:
        return nacl.bindings.crypto_sign(message, self._secret)[:64]

    def _reference(self, draft: Draft, seq: int, prev: str) -> Envelope:
        return build_envelope(
            device=self.device,
            boot=self.boot,
            seq=seq,
            ts=draft.ts,
            mono=draft.mono,
            clock_ok=draft.clock_ok,
            type=draft.type,
            sev=draft.sev,
            data=draft.data,
            prev=prev,
            key=self._key,
        )


def _gil_holding_signer(secret: bytes) -> Callable[[bytes], bytes] | None:
    """libsodium's Ed25519, called *without* releasing the GIL (ctypes.PyDLL).

    PyNaCl (cffi) releases the GIL around every call. For 25 µs of signing that is a bad
    trade in this process: the uplink thread takes the interpreter meanwhile and the
    core, in the middle of a lock decision or an alarm, waits until the uplink's next
    system call to get it back (measured: sealing the two records of a grant took
    0.25 ms instead of 0.08 while the uplink handled the first badge's PUBACK). The
    library is the one PyNaCl already loaded, so the signatures are the same bytes;
    without its symbol (another PyNaCl build), the releasing call is used.
    """
    function = _sodium_detached()
    if function is None:
        return None

    def sign(message: bytes) -> bytes:
        out = ctypes.create_string_buffer(64)
        if function(out, None, message, len(message), secret) != 0:
            raise RuntimeError("crypto_sign_ed25519_detached failed")
        return out.raw

    return sign


@functools.cache
def _sodium_detached() -> Any:
    # Importing nacl.bindings has run sodium_init() on this very library.
    try:
        function = ctypes.PyDLL(nacl._sodium.__file__).crypto_sign_ed25519_detached
    except (OSError, AttributeError):
        log.info("outbox.signer", holds_gil=False)
        return None
    function.argtypes = [
        ctypes.c_char_p,  # signature out, 64 bytes
        ctypes.c_void_p,  # its length out: not needed (always 64)
        ctypes.c_char_p,
        ctypes.c_ulonglong,
        ctypes.c_char_p,  # the 64-byte secret key (seed + public key)
    ]
    function.restype = ctypes.c_int
    return function


def _plain(value: object, depth: int) -> bool:
    """JSON that needs no checking: str, int, bool, None, str-keyed dicts, lists."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        items = cast("dict[Any, Any]", value).items()
        return all(type(k) is str and _plain(v, depth + 1) for k, v in items)
    if kind is list:
        return all(_plain(v, depth + 1) for v in cast("list[Any]", value))
    return False


def chain_hash(payload: bytes) -> str:
    """`wire.chain_hash`, without its call overhead: the next envelope's `prev`."""
    return base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
