"""`CommandGateway`: sign a command with the central key, publish it, wait for the answer.

    answer = gateway.send("cab-chem-0042", "ack", {"alarm": "A3-1", "comment": "看过了"},
                          by="p-2001")
    answer.result  # "applied" | "rejected" | "timeout"; answer.reason; answer.seq

- `by` is set by the gateway for the commands that take one (`approve`,
  `approve_withdrawal`, `approve_disposal`, `ack`): the logged-in person, whatever the
  caller's args said.
- The command is built and signed by central.commands.issue (agent.wire's command
  contract), with a fresh nonce and a short validity.
- The answer is the device's `command.applied` / `command.rejected` (or
  `policy.applied` / `policy.rejected`) with the same nonce **as stored by the ingest**,
  i.e. after its signature and chain were verified; any `serve` process may store it.
Errors are typed: `UnknownDevice` (a LookupError: not in the registry), `CommandRefused`
(the command cannot be built: unknown name, floats in args), `CommandNotSent` (the
broker is down or refused the publish).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from agent.wire import SigningKey, WireError
from central.commands import ANSWERS, DEFAULT_ANSWERS, issue
from central.errors import CentralError
from central.registry import Device
from central.store import Store

log = structlog.get_logger("central.commands")
TAKES_BY = frozenset({"approve", "approve_withdrawal", "approve_disposal", "ack"})
VALIDITY_S = 60  # long enough for a slow link, short enough that a late copy is useless


class UnknownDevice(LookupError):
    """The device is not in the registry: no key to address it with."""


class CommandRefused(CentralError):
    """The command cannot be built or signed (unknown name, bad args)."""


class CommandNotSent(CentralError):
    """The broker is unreachable or refused the publish; the device never saw it."""


@dataclass(frozen=True)
class CommandAnswer:
    result: str  # applied | rejected | timeout
    reason: str | None
    seq: int | None


class CommandGateway:
    def __init__(
        self,
        store: Store,
        devices: Callable[[], Mapping[str, Device]],
        key: SigningKey,
        publish: Callable[[str, bytes], None],
        *,
        prefix: str = "cabinet",
        poll_s: float = 0.05,
    ) -> None:
        self.store = store
        self.devices = devices
        self.key = key
        self._publish = publish
        self.prefix = prefix
        self.poll_s = poll_s

    def _device(self, device: str) -> Device:
        found = self.devices().get(device)
        if found is None:
            raise UnknownDevice(f"{device!r} is not in the device registry")
        return found

    def fire(self, device: str, name: str, args: Mapping[str, Any]) -> str:
        """Sign and publish without waiting for the answer (resend); return the nonce."""
        target = self._device(device)
        try:
            command = issue(
                target,
                name,
                args,
                self.key,
                now_ms=int(time.time() * 1000),
                ttl_s=VALIDITY_S,
                prefix=self.prefix,
            )
        except WireError as exc:
            raise CommandRefused(f"command {name!r}: {exc}") from None
        try:
            self._publish(command.topic, command.payload)
        except CentralError as exc:
            raise CommandNotSent(f"command {name!r} to {device}: {exc.message}") from None
        return command.nonce

    def send(
        self, device: str, name: str, args: dict[str, Any], by: str, timeout_s: float = 10
    ) -> CommandAnswer:
        args = dict(args)
        if name in TAKES_BY:
            args["by"] = by
        else:
            args.pop("by", None)
        self._device(device)
        after = self.store.head_seq(device)
        nonce = self.fire(device, name, args)
        log.info("command.sent", device=device, name=name, by=by)
        types = ANSWERS.get(name, DEFAULT_ANSWERS)
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.store.command_answer(device, nonce, types, after)
            if found is not None:
                kind, seq, data = found
                applied = kind.endswith(".applied")
                reason = data.get("reason") if isinstance(data.get("reason"), str) else None
                return CommandAnswer("applied" if applied else "rejected", reason, seq)
            if time.monotonic() >= deadline:
                return CommandAnswer("timeout", None, None)
            time.sleep(self.poll_s)
