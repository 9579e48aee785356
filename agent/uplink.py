"""MQTT uplink: publish the outbox, keep the status topic true, take signed commands.

One thread owns the paho client and drives it as an external loop (`select` on the
socket and a doorbell, then `loop_read`/`loop_write`/`loop_misc`). PUBACK
callbacks, the drain and the marks all run on that thread, so the in-flight bookkeeping
needs no lock, and there is no second thread bouncing the GIL on every PUBACK as with
`loop_start()` plus a publisher thread. The core thread only appends to a deque and
rings a doorbell (agent.doorbell) to wake us (`notify`).

The outbox is the source of truth. Paho's own queue is dropped on every reconnect and
the drain (agent.drain: what to publish next, and what each PUBACK means) restarts from
the lowest unsent seq, so after any outage everything not PUBACKed with a success code
is sent again (at-least-once; consumers dedupe by seq).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent import wire
from agent.backoff import Backoff, ReconnectSchedule, RefusalTracker
from agent.broker_client import paho_client
from agent.commands import CommandVerifier
from agent.doorbell import Doorbell
from agent.drain import Drain
from agent.outbox import Outbox
from config.agent import AgentConfig
from drivers.base import Post
from rules.inputs import AnyInput, CommandRejected

log = structlog.get_logger("uplink")

IDLE_S: Final = 0.5  # longest select: bounds how stale `progress` gets
MAX_PACKET: Final = 1024 * 1024  # the broker drops bigger commands instead of sending them
CONNACK_TIMEOUT_S: Final = 10.0  # a broker that accepts TCP but never answers is down


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Uplink:
    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        *,
        pubkey: str,
        version: str,
        boot: int,
        post: Post,
        verifier: CommandVerifier,
        clock_ms: Callable[[], int] = wall_ms,
        fault_after_s: float = 30.0,
        fault_min_refusals: int = 3,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self._cfg = config
        self._broker = config.broker
        self._outbox = outbox
        self._post = post
        self._verifier = verifier
        self._clock_ms = clock_ms
        self._status_topic = wire.status_topic(config.topic_prefix, config.site, config.device)
        who = {"device": config.device, "boot": boot}
        self._birth = {"state": "online", **who, "pubkey": pubkey, "version": version}
        self._offline = wire.canonical({"state": "offline", **who})
        self._reconnect = ReconnectSchedule(
            Backoff(self._broker.reconnect_min_s, self._broker.reconnect_max_s), CONNACK_TIMEOUT_S
        )
        # Shared with other threads: the drain's inbound deques and plain counters.
        refusals = RefusalTracker(retry_min_s, retry_max_s, fault_after_s, fault_min_refusals)
        self._drain = Drain(
            outbox, refusals, self._broker.inflight, self._broker.drain_per_s, time.monotonic()
        )
        self._doorbell = Doorbell()
        self._stopping = False
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        self.progress = 0
        self._state = "disconnected"
        self._n = {"reconnects": 0, "commands": 0, "errors": 0}
        # Owned by the uplink thread only.
        self._connack: ReasonCode | None = None
        self._socket_up = False  # between a connect() that worked and _lost()
        self._dropped = False  # paho or a failed publish saw the link die; _lost() follows
        self._inflight = self._drain.in_flight  # mid -> seq; bench/rig.py reads it too
        self._status_mids: set[int] = set()
        self._commands_ready = False  # the broker granted the command subscription
        self._client = self._make_client()

    # --- public API (any thread) ------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the retained clean offline status, wait for its PUBACK, disconnect."""
        self._stop_deadline = time.monotonic() + max(0.0, timeout - 0.5)
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("uplink.stop_timeout", timeout_s=timeout)

    def notify(self, envelopes: Iterable[wire.Envelope]) -> None:
        """New committed events (core thread): cheap; alarms overtake any backlog."""
        self._drain.notify(envelopes)
        self._wake()

    def republish(self, from_seq: int, to_seq: int) -> None:
        self._drain.request(from_seq, to_seq)
        self._wake()

    @property
    def state(self) -> str:
        return self._state

    @property
    def commands_ready(self) -> bool:
        """Connected and the broker granted the command subscription (its SUBACK came)."""
        return self._state == "connected" and self._commands_ready

    def stats(self) -> dict[str, int]:
        counts = {**self._n, **self._drain.stats(), "unsent": self._outbox.stats().unsent}
        counts["errors"] += counts.pop("mark_failed")
        return counts

    # --- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            self.progress += 1
            try:
                self._step()
            except Exception:  # the uplink must outlive any bug in one step
                self._n["errors"] += 1
                log.exception("uplink.step_failed")
                try:
                    self._lost("internal error")
                except Exception:
                    log.exception("uplink.reset_failed")
                    time.sleep(IDLE_S)  # no hot loop on a persistent fault
        try:
            self._shutdown()
        except Exception:
            log.exception("uplink.shutdown_failed")
        self._state = "disconnected"
        self._doorbell.close()

    def _step(self) -> None:
        now = time.monotonic()
        if self._socket_up and self._dropped:
            self._lost("connection dropped")
            return
        if not self._socket_up:
            wait = self._reconnect.wait_s(now)
            if wait > 0:
                self._wait(min(IDLE_S, wait))
            else:
                self._connect()
            return
        rc = self._io(self._drain.idle_s(now, IDLE_S) if self._state == "connected" else 0.05)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._dropped:
            refused = self._connack  # paho reports a refused CONNACK as a protocol error
            failed = refused is not None and refused.is_failure
            self._lost(f"CONNACK {refused}" if failed else mqtt.error_string(rc))
            return
        if self._connack is not None:
            self._up(self._connack)
        if self._state == "connecting" and self._reconnect.connack_overdue(time.monotonic()):
            self._lost("no CONNACK")
            return
        if self._state == "connected":
            self._drain.pump(time.monotonic(), self._publish)
        self._drain.flush_marks(time.monotonic(), force=False)
        news = self._drain.refusal_news(time.monotonic())
        if news is not None:
            self._post_input(news)

    def _io(self, timeout: float) -> MQTTErrorCode:
        sock = self._client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes that select() cannot see.
        pending = sock.pending() if hasattr(sock, "pending") else 0
        broker, bell = sock.fileno(), self._doorbell.fileno()
        writers = [broker] if self._client.want_write() else []
        try:
            readable, writable, _ = select.select(
                [broker, bell], writers, [], 0.0 if pending else timeout
            )
        except (OSError, ValueError):
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if bell in readable:
            self._doorbell.answer()
        if broker in readable or pending:
            rc = self._client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        if writable and self._client.socket() is not None:
            rc = self._client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return self._client.loop_misc()

    def _wait(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self._doorbell], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(timeout)
            return
        if readable:
            self._doorbell.answer()

    def _wake(self) -> None:
        self._doorbell.ring()

    # --- connection -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = paho_client(self._cfg, self._status_topic, self._offline)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self) -> None:
        self._state = "connecting"
        self._client.drop_out_messages()  # resent from the outbox instead, in seq order
        self._connack = None
        b = self._broker
        try:
            if b.protocol == "5":
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = b.session_expiry_s
                props.MaximumPacketSize = MAX_PACKET
                self._client.connect(
                    b.host, b.port, b.keepalive_s, clean_start=False, properties=props
                )
            else:
                self._client.connect(b.host, b.port, b.keepalive_s)
        except (OSError, ValueError) as exc:
            self._state = "disconnected"
            delay = self._reconnect.failed(time.monotonic())
            log.warning("uplink.connect_failed", error=str(exc), retry_in_s=round(delay, 2))
            return
        self._socket_up = True
        self._dropped = False
        self._reconnect.dialled(time.monotonic())

    def _up(self, reason: ReasonCode) -> None:
        self._connack = None
        if reason.is_failure:
            log.error("uplink.connect_refused", reason=str(reason))
            self._lost(f"CONNACK {reason}")
            return
        self._state = "connected"
        self._commands_ready = False
        self._reconnect.connected()
        birth = {**self._birth, "last_seq": self._outbox.last_seq}
        info = self._client.publish(self._status_topic, wire.canonical(birth), qos=1, retain=True)
        self._status_mids.add(info.mid)
        self._client.subscribe(
            wire.command_filter(self._cfg.topic_prefix, self._cfg.site, self._cfg.device), qos=1
        )
        log.info("uplink.connected", broker=self._broker.host, last_seq=birth["last_seq"])

    def _lost(self, why: str) -> None:
        was = self._state
        self._state = "disconnected"
        self._commands_ready = False
        self._socket_up = False
        self._connack = None
        if self._client.socket() is not None:
            self._client.disconnect()  # closes the socket; we reconnect (new Will) anyway
        self._dropped = False
        self._drain.connection_lost(time.monotonic())
        self._client.drop_out_messages()
        self._status_mids.clear()
        if was == "connected":
            self._n["reconnects"] += 1
        delay = self._reconnect.failed(time.monotonic())
        log.warning("uplink.disconnected", reason=why, retry_in_s=round(delay, 2))

    def _shutdown(self) -> None:
        self._drain.flush_marks(time.monotonic(), force=True)
        if self._state == "connected":
            info = self._client.publish(self._status_topic, self._offline, qos=1, retain=True)
            self._status_mids.add(info.mid)
            while (
                info.mid in self._status_mids
                and not self._dropped
                and time.monotonic() < self._stop_deadline
            ):
                if self._io(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            # A normal DISCONNECT: the broker discards the Will, the clean offline stays.
            self._client.disconnect()
            self._io(0.05)
            self._drain.flush_marks(time.monotonic(), force=True)
            log.info("uplink.stopped", offline_acked=info.mid not in self._status_mids)
        elif self._socket_up:
            self._client.disconnect()
        self._socket_up = False

    # --- paho callbacks (uplink thread; they record facts, never raise) ----------------

    def _on_connect(
        self, client: object, userdata: Any, flags: Any, reason: ReasonCode, props: object = None
    ) -> None:
        self._connack = reason

    def _on_disconnect(
        self, client: object, userdata: Any, flags: Any, reason: ReasonCode, props: object = None
    ) -> None:
        self._dropped = True

    def _on_publish(
        self, client: object, userdata: Any, mid: int, reason: ReasonCode, props: object = None
    ) -> None:
        try:
            if mid in self._status_mids:
                self._status_mids.discard(mid)
                if reason.is_failure:
                    log.warning("uplink.status_refused", reason=str(reason))
                return
            if reason.is_failure:
                self._drain.refused(mid, str(reason), time.monotonic())
            else:
                self._drain.acked(mid, time.monotonic())
        except Exception:
            self._n["errors"] += 1
            log.exception("uplink.on_publish_failed", mid=mid)

    def _on_subscribe(
        self, client: object, userdata: Any, mid: int, codes: list[ReasonCode], props: object
    ) -> None:
        refused = [str(code) for code in codes if code.is_failure]
        if refused:  # the broker's ACL: no command can reach this cabinet until fixed
            log.error("uplink.commands_refused", reasons=refused)
        else:
            self._commands_ready = True

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._n["commands"] += 1
        verdict: AnyInput
        try:
            verdict = self._verifier.check(msg.topic, bytes(msg.payload), self._clock_ms())
        except UnicodeDecodeError:  # paho decodes the topic lazily
            verdict = CommandRejected(name="?", nonce="", reason="malformed")
        except Exception:  # a bug in the verifier must not take the uplink down
            self._n["errors"] += 1
            log.exception("uplink.command_check_failed")
            verdict = CommandRejected(name="?", nonce="", reason="internal_error")
        self._post_input(verdict)

    def _post_input(self, item: AnyInput) -> None:
        try:
            self._post(item)
        except Exception:
            self._n["errors"] += 1
            log.exception("uplink.post_failed", input=type(item).__name__)

    # --- publishing (the drain decides what, this puts it on the wire) -------------

    def _publish(self, event_type: str, payload: bytes) -> int | None:
        topic = wire.event_topic(
            self._cfg.topic_prefix, self._cfg.site, self._cfg.device, event_type
        )
        info = self._client.publish(topic, payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._dropped = True  # the next step notices and reconnects
            return None
        return info.mid
