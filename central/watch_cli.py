"""`cabinetctl watch`: the all-day live view, optionally keeping what it sees in the centre's store.

MQTT in, `WatchState` (central.watch) in the middle, the screen or JSON lines out. With
`--store` every message is also judged and recorded exactly as `cabinet-central serve`
does it (central.ingest.verifying.judge, then `Store.record` in one transaction), and the
open alarms shown are the store's alarm projection: a restarted watch shows the alarms
the record implies, across the cabinets' boots, not only what this terminal saw.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from contextlib import nullcontext, suppress
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from agent.wire import chain_hash
from agent.wire.topics import ANY, event_filter, status_filter
from central.chain import Timing
from central.commands import issue
from central.console import Display, render
from central.errors import CentralError
from central.ingest.verifying import judge
from central.mqtt import BrokerConnection, BrokerOptions, Message
from central.options import EXISTING, broker_from, broker_options, central_key, key_option
from central.options import registry_option as registry_opt
from central.policy_tools import load_policy_quietly
from central.registry import Registry, load_registry, registry_path
from central.store import Store
from central.store.recording import Presence, Rejected, Verified
from central.store.store import StoreUnavailable
from central.store_arg import STORE_HELP, Names, open_store
from central.timefmt import DEFAULT_TZ, duration_s, zone
from central.watch import CabinetStatus, ResendRequest, Seen, Step, WatchState, json_line


def now_ms() -> int:
    return int(time.time() * 1000)


@click.command()
@click.option("--site", help="only this site (default: all)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, for piping")
@click.option("--store", "store_text", help=STORE_HELP + "; keeps what is verified")
@click.option("--policy", "policy_file", type=EXISTING, help="policy TOML, for names")
@click.option("--tz", default=DEFAULT_TZ, show_default=True, help="time zone of times shown")
@click.option("--bell", is_flag=True, help="ring the terminal bell on every new alarm")
@click.option("--duration", help="stop after this long (default: until Ctrl-C)")
@click.option("--session", help="persistent broker session name: missed events are queued")
@click.option(
    "--resend-after", default=1.0, show_default=True, help="seconds before a gap is asked for"
)
@key_option("needed to ask cabinets to resend gaps")
@registry_opt
@broker_options
def watch(**params: Any) -> None:
    """Live, verified view of all cabinets: alarms on top, event log below."""
    known = load_registry(registry_path(params.pop("registry")))
    key_path = params.pop("key")
    key = central_key(key_path) if key_path is not None else None
    site, prefix = params.pop("site"), params.pop("prefix")
    as_json, bell = params.pop("as_json"), params.pop("bell")
    display_zone = zone(params.pop("tz"))
    policy = load_policy_quietly(params.pop("policy_file"))
    duration = params.pop("duration")
    stop_at = time.monotonic() + duration_s(duration, "--duration") if duration else None
    session = params.pop("session")
    timing = Timing(grace_ms=int(float(params.pop("resend_after")) * 1000))
    store_text = params.pop("store_text")
    options = broker_from(
        params,
        client_id=f"cabinetctl-watch-{session}" if session else None,
        session_expiry_s=7 * 24 * 3600 if session else 0,
    )
    # Ctrl-C is how a person ends an all-day watch, at any moment: not an error.
    with suppress(KeyboardInterrupt):
        store = open_store(store_text, known, create=True) if store_text else None
        try:
            state = WatchState(known, prefix=prefix, timing=timing, lookup=_stored_hash(store))
            if store is not None:
                _resume(state, store, known)
            display = Display(display_zone, Names(store, policy))
            loop = WatchLoop(state, known, key, options, prefix, display, store, as_json, bell)
            loop.run(site, stop_at)
        finally:
            if store is not None:
                store.close()


def _stored_hash(store: Store | None) -> Any:
    """The chain hash of a stored (device, seq), for the verifier's links across restarts."""
    if store is None:
        return None

    def lookup(device: str, seq: int) -> str | None:
        payloads = store.events(device, seq, 1)
        if not payloads:
            return None
        return chain_hash(payloads[0]) if _seq_of(payloads[0]) == seq else None

    return lookup


def _seq_of(payload: bytes) -> int | None:
    seq = json.loads(payload).get("seq")
    return seq if type(seq) is int else None


def _resume(state: WatchState, store: Store, registry: Registry) -> None:
    """Continue each cabinet's chain where the store ends; show the alarms it holds open."""
    for device in registry.devices:
        top = store.head_seq(device)
        stored = store.events(device, top, 1) if top else []
        if stored:
            state.chain(device).seed(top, chain_hash(stored[0]))
    state.load_alarms(store.alarms(state="open"))


class WatchLoop:
    """MQTT in, WatchState in the middle, screen or JSON lines and the store out."""

    def __init__(
        self,
        state: WatchState,
        registry: Registry,
        key: Any,
        options: BrokerOptions,
        prefix: str,
        display: Display,
        store: Store | None,
        as_json: bool,
        bell: bool,
    ) -> None:
        self.state, self.registry, self.key = state, registry, key
        self.options, self.prefix, self.display = options, prefix, display
        self.store, self.as_json, self.bell = store, as_json, bell
        self.console = Console()
        self.unstored: list[Message] = []  # received, not yet in the store (it was down)
        self.store_down = False

    def run(self, site: str | None, stop_at: float | None) -> None:
        level = site or ANY
        filters = [event_filter(self.prefix, level), status_filter(self.prefix, level)]
        with BrokerConnection(self.options) as conn:
            conn.subscribe(filters)
            if self.as_json:
                self._print({"kind": "watching", "broker": self.options.url, "filters": filters})
                self._print({"kind": "open_alarms", "alarms": self._alarm_lines()})
            live = (
                nullcontext()
                if self.as_json
                else Live(console=self.console, screen=self.console.is_terminal, auto_refresh=False)
            )
            with live as screen:
                self._loop(conn, screen, stop_at)

    def _loop(self, conn: BrokerConnection, screen: Live | None, stop_at: float | None) -> None:
        drawn = 0.0
        while stop_at is None or time.monotonic() < stop_at:
            step = Step()
            received: list[Message] = []
            try:
                received.append(conn.messages.get(timeout=0.2))
                for _ in range(500):  # drain a burst before redrawing
                    received.append(conn.messages.get_nowait())
            except queue.Empty:
                pass
            for message in received:
                step.extend(self.state.on_message(message.topic, message.payload, now_ms()))
            step.extend(self.state.tick(now_ms()))
            self._keep(received, step)
            self._ask_resends(conn, step)
            self._output(step)
            if screen is not None and time.monotonic() - drawn > 0.25:
                drawn = time.monotonic()
                screen.update(
                    render(
                        self.state,
                        self.display,
                        now_ms=now_ms(),
                        broker=self.options.url,
                        connected=conn.connected,
                        height=self.console.size.height,
                    ),
                    refresh=True,
                )

    def _keep(self, received: list[Message], step: Step) -> None:
        """Record what arrived through the ingest's judging and recording; reload alarms."""
        if self.store is None:
            return
        self.unstored += received
        if not self.unstored:
            return
        now = now_ms()
        devices = self.registry.devices
        judged = [judge(m.topic, m.payload, devices, now) for m in self.unstored]
        verified = [j for j in judged if isinstance(j, Verified)]
        rejected = [j for j in judged if isinstance(j, Rejected)]
        presence = [j for j in judged if isinstance(j, Presence)]
        try:
            self.store.record(verified, rejected, presence)
            self.state.load_alarms(self.store.alarms(state="open"))
        except StoreUnavailable as exc:
            if not self.store_down:  # once per outage; what arrived is kept and retried
                note = f"store: {exc.message}; {len(self.unstored)} messages held, retrying"
                step.extend(self.state.note(note, None, now_ms()))
            self.store_down = True
            return
        self.store_down = False
        self.unstored = []

    def _ask_resends(self, conn: BrokerConnection, step: Step) -> None:
        for ask in step.resends:
            what = f"seq {ask.from_seq}..{ask.to_seq}"
            if self.key is None:
                if ask.attempt == 1:
                    note = f"gap {what}: cannot ask for a resend without --key"
                    step.extend(self.state.note(note, ask.device, now_ms()))
                continue
            if not conn.connected:
                # The screen must not freeze on a dead link; the gap is asked for again.
                note = f"resend of {what} not sent: broker disconnected (will retry)"
                step.extend(self.state.note(note, ask.device, now_ms()))
                continue
            device = self.registry.devices[ask.device]
            args = {"from_seq": ask.from_seq, "to_seq": ask.to_seq}
            issued = issue(device, "resend", args, self.key, now_ms=now_ms(), prefix=self.prefix)
            try:
                conn.publish(issued.topic, issued.payload, timeout_s=2)
            except CentralError as exc:
                step.extend(
                    self.state.note(f"resend of {what} not sent: {exc}", ask.device, now_ms())
                )

    def _output(self, step: Step) -> None:
        if self.as_json:
            items: list[Seen | CabinetStatus | ResendRequest] = [
                *step.statuses,
                *step.shown,
                *step.resends,
            ]
            for item in items:
                sys.stdout.write(json_line(item) + "\n")
            sys.stdout.flush()
        if self.bell and step.new_alarms:
            if self.as_json:
                sys.stderr.write("\a")
                sys.stderr.flush()
            else:
                self.console.bell()

    def _alarm_lines(self) -> list[dict[str, Any]]:
        return [
            {
                "device": a.device,
                "alarm": a.alarm,
                "kind": a.kind,
                "since": self.display.when(a.since_ms),
                "acked_by": a.acked_by,
            }
            for a in self.state.open_alarms()
        ]

    def _print(self, body: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(body, ensure_ascii=False, sort_keys=True) + "\n")
        sys.stdout.flush()
