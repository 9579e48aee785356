"""The properties the fuzzers check, one target per trust boundary, shared by the
hypothesis tests (CI) and the atheris harness (long mode).

- serial: bytes from the MCU line into the agent's receive path (decoder, reliability
  channel, its answers). Nothing raises, memory stays bounded, and whatever is delivered
  is a well-formed frame that re-encodes to itself.
- command: MQTT payloads on the command topic into `CommandVerifier.check`, and its
  verdict into a live core. Only what the central key really signed may be accepted;
  a refusal consumes no nonce and changes no rule state (policy, alarms, sessions...).
- policy: policy files given to `run --policy`. A JSON file is believed only if the
  central key signed it; a TOML file is refused outright unless the cabinet is simulated,
  and either way bad input is a PolicyError, never a crash.

Anything else raising out of a target is a crash: the fuzzers report it as such.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from agent import __version__, wire
from agent.clock import VirtualClock
from agent.commands import CommandVerifier
from agent.core import Core
from agent.nonces import NonceStore
from agent.outbox import Outbox
from agent.policy_source import PolicyError, read_policy_file
from agent.status import rules_view
from firmware_bridge.protocol import (
    MAX_ENCODED,
    Channel,
    Decoder,
    Deliver,
    Frame,
    FrameError,
    Transmit,
    cobs_encode,
    decode_frame,
    encode,
    frame_body,
)
from rules.cabinet import CabinetRules
from rules.inputs import CommandRejected, PolicyLoaded, Started

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "cab-chem-0042"
NOW_MS = 1_790_000_000_000
CENTRAL = wire.SigningKey.from_seed(bytes(range(32)))  # the fuzzers' "centre"
COMMAND_NAMES = sorted(wire.COMMAND_NAMES)


# --- serial ----------------------------------------------------------------------------


def check_serial(data: bytes, cuts: bytes = b"") -> list[Frame]:
    """Feed `data`, split at `cuts` (fractions of 255), into a fresh receive path;
    return the frames it delivered, in order."""
    decoder = Decoder()
    channel = Channel(ack_timeout_ms=100, retries=3)
    points = sorted({c * len(data) // 255 for c in cuts} | {0, len(data)})
    delivered: list[Frame] = []
    now = 0
    for start, end in itertools.pairwise(points):
        now += 7
        for item in decoder.feed(data[start:end]):
            assert len(decoder._buffer) <= MAX_ENCODED, "garbage grew the decoder's memory"
            if isinstance(item, FrameError):
                answer = channel.answer_error(item)
                if answer is not None:
                    encode(answer.frame)
                continue
            assert isinstance(item, Frame), item
            for event in channel.receive(item, now):
                if isinstance(event, Transmit):
                    encode(event.frame)
                elif isinstance(event, Deliver):
                    frame = event.frame
                    delivered.append(frame)
                    again = decode_frame(cobs_encode(frame_body(frame)))
                    assert again == frame, f"{frame} does not survive its own encoding"
                    if frame.message.RELIABLE:
                        encode(channel.answer(frame).frame)
        channel.poll(now)
    return delivered


# --- commands over MQTT ------------------------------------------------------------------


def genuine_command(name: str, args: dict[str, Any], nonce: str | None = None) -> dict[str, Any]:
    return wire.build_command(
        device=DEVICE,
        name=name,
        args=args,
        nonce=nonce or uuid.uuid4().hex,
        issued_at_ms=NOW_MS - 1000,
        expires_at_ms=NOW_MS + 600_000,
        key=CENTRAL,
    )


def signed_policy(version: int = 8) -> dict[str, Any]:
    from config.loading import read_toml

    _, inner = read_toml(ROOT / "examples" / "policy.toml")
    inner = {**inner, "version": version}
    return wire.sign_policy(json.loads(json.dumps(inner, default=str)), CENTRAL)


def seed_commands() -> list[dict[str, Any]]:
    """One genuine command of each kind: where mutations start from."""
    return [
        genuine_command("policy", {"policy": signed_policy()}),
        genuine_command("approve", {"person": "p-1002", "by": "p-1001"}),
        genuine_command(
            "approve_withdrawal",
            {"container": "c-NaCN-01", "max_mg": 5000, "persons": ["p-1001"], "until_ms": NOW_MS},
        ),
        genuine_command("ack", {"alarm": "A1-1", "by": "p-1001", "comment": "checked"}),
        genuine_command("snapshot", {}),
        genuine_command("resend", {"from_seq": 1, "to_seq": 3}),
    ]


def signed_by_central(document: object) -> bool:
    """The oracle, independent of the verifier: does `sig` verify over the rest?"""
    if not isinstance(document, dict) or not isinstance(document.get("sig"), str):
        return False
    body = {k: v for k, v in document.items() if k != "sig"}
    try:
        return CENTRAL.public.verify(wire.canonical(body), wire.b64u_decode(document["sig"]))
    except (wire.WireError, ValueError, TypeError, RecursionError):
        return False  # not even canonicalisable: certainly not what the centre signed


def _payload_signed(payload: bytes) -> bool:
    try:
        return signed_by_central(json.loads(payload.decode("utf-8")))
    except (ValueError, RecursionError):
        return False


class CommandTarget:
    """A verifier and a live core (virtual clock) under the example policy."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="fuzz-cmd-")
        directory = state_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.nonces = NonceStore(directory / "nonces.db")
        self.verifier = CommandVerifier(DEVICE, CENTRAL.public, self.nonces)
        self.rules = CabinetRules(DEVICE, __version__)
        self.outbox = Outbox(directory / "outbox.db", DEVICE, wire.SigningKey.generate())
        self.core = Core(self.rules, self.outbox, VirtualClock(NOW_MS))
        policy, _ = read_policy_file(ROOT / "examples" / "policy.toml", None, allow_plain=True)
        self.core.process([Started(__version__, 1), PolicyLoaded(policy, None, "file")])
        self.accepted = 0

    def state(self) -> str:
        view = rules_view(self.rules, self.core.clock.now())
        return repr((view, self.rules.ledger.approvals, self.rules.access.locked_until))

    def check(self, name: str, payload: bytes) -> None:
        topic = wire.command_topic("cabinet", "lab", DEVICE, name)
        nonces, before = len(self.nonces), self.state()
        verdict = self.verifier.check(topic, payload, NOW_MS)
        if isinstance(verdict, CommandRejected):
            assert len(self.nonces) == nonces, "a refused command consumed a nonce"
        else:
            assert _payload_signed(payload), f"accepted what the centre did not sign: {verdict}"
            if isinstance(verdict, PolicyLoaded):
                assert signed_by_central(verdict.document), "accepted an unsigned policy"
            self.accepted += 1
        self.core.process([verdict])
        if isinstance(verdict, CommandRejected):
            assert self.state() == before, f"a refused command changed state: {verdict}"

    def close(self) -> None:
        self.outbox.close()
        self.nonces.close()
        if self._tmp is not None:
            self._tmp.cleanup()


# --- policy files -------------------------------------------------------------------------


class PolicyTarget:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fuzz-policy-")
        self.dir = Path(self._tmp.name)
        self.accepted = 0

    def check(self, data: bytes, suffix: str, simulated: bool) -> None:
        path = self.dir / f"policy{suffix}"
        path.write_bytes(data)
        try:
            policy, document = read_policy_file(path, CENTRAL.public, allow_plain=simulated)
        except PolicyError:
            return
        self.accepted += 1
        if suffix == ".toml":
            assert simulated, "a plain policy was believed by a real cabinet"
            assert document is None
        else:
            assert signed_by_central(document), "an unsigned policy file was believed"
        assert policy.version >= 0

    def close(self) -> None:
        self._tmp.cleanup()
