"""MQTT uplink: publish the outbox, keep the status topic true, take signed commands.

One thread owns the paho client and drives it as an external loop (`select` on the
socket and a wake-up socketpair, then `loop_read`/`loop_write`/`loop_misc`). PUBACK
callbacks, the drain and the marks all run on that thread, so the in-flight bookkeeping
needs no lock, and there is no second thread bouncing the GIL on every PUBACK as with
`loop_start()` plus a publisher thread. The core thread only appends to a deque and
writes one byte to wake us (`notify`).

The outbox is the source of truth. Paho's own queue is dropped on every reconnect and
the drain restarts from the lowest unsent seq, so after any outage everything not
PUBACKed with a success code is sent again (at-least-once; consumers dedupe by seq).
"""

from __future__ import annotations

import contextlib
import select
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent import wire
from agent.backoff import Backoff, RefusalTracker, TokenBucket
from agent.commands import CommandVerifier
from agent.outbox import Outbox, Stored
from config.agent import AgentConfig
from drivers.base import Post
from rules.inputs import AnyInput, CommandRejected, SensorFault, SensorRecovered

log = structlog.get_logger("uplink")

PAGE: Final = 500  # rows per outbox read
MARK_BATCH: Final = 256  # marks per transaction ...
MARK_EVERY_S: Final = 0.1  # ... or at least this often
URGENT_EXTRA: Final = 32  # alarms may exceed the window so a full window never delays them
IDLE_S: Final = 0.5  # longest select: bounds how stale `progress` gets
MAX_PACKET: Final = 1024 * 1024  # the broker drops bigger commands instead of sending them
CONNACK_TIMEOUT_S: Final = 10.0


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
        self._birth = {
            "state": "online",
            "device": config.device,
            "boot": boot,
            "pubkey": pubkey,
            "version": version,
        }
        self._offline = wire.canonical({"state": "offline", "device": config.device, "boot": boot})
        self._backoff = Backoff(self._broker.reconnect_min_s, self._broker.reconnect_max_s)
        window = self._broker.inflight
        self._bucket = TokenBucket(
            self._broker.drain_per_s, max(window, self._broker.drain_per_s / 20), time.monotonic()
        )
        # Shared with other threads: deques (atomic append/popleft) and plain counters.
        self._urgent: deque[wire.Envelope] = deque(maxlen=1000)  # still in the outbox
        self._requests: deque[tuple[int, int]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._woken = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        self.progress = 0
        self._state = "disconnected"
        self._n = {
            "published": 0,
            "acked": 0,
            "failed": 0,
            "reconnects": 0,
            "commands": 0,
            "republished": 0,
            "errors": 0,
        }
        # Owned by the uplink thread only.
        self._connack: ReasonCode | None = None
        self._socket_up = False  # between a connect() that worked and _lost()
        self._dropped = False  # paho or a failed publish saw the link die; _lost() follows
        self._next_attempt = 0.0
        self._connack_deadline = 0.0
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._inflight_seqs: set[int] = set()
        self._status_mids: set[int] = set()
        self._cursor = 0  # highest seq the drain has taken in this connection
        self._pending: deque[Stored] = deque()
        self._backlog_maybe = True
        self._ahead: set[int] = set()  # alarms published before the drain reached them
        self._resend: deque[tuple[int, int]] = deque()
        self._resend_rows: deque[Stored] = deque()
        self._acked: list[int] = []
        self._acked_since = 0.0
        self._refused = RefusalTracker(retry_min_s, retry_max_s, fault_after_s, fault_min_refusals)
        self._fault_posted = False
        self._last_fault_check = 0.0
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
        self._urgent.extend(e for e in envelopes if e.fields.get("sev") == "alarm")
        self._backlog_maybe = True
        self._wake()

    def republish(self, from_seq: int, to_seq: int) -> None:
        self._requests.append((from_seq, to_seq))
        self._wake()

    @property
    def state(self) -> str:
        return self._state

    def stats(self) -> dict[str, int]:
        return {
            **self._n,
            "in_flight": len(self._inflight),
            "refused_pending": len(self._refused),
            "unsent": self._outbox.stats().unsent,
        }

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
        self._wake_r.close()
        self._wake_w.close()

    def _step(self) -> None:
        now = time.monotonic()
        if self._socket_up and self._dropped:
            self._lost("connection dropped")
            return
        if not self._socket_up:
            if now < self._next_attempt:
                self._wait(min(IDLE_S, self._next_attempt - now))
            else:
                self._connect()
            return
        rc = self._io(self._select_timeout(now))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._dropped:
            refused = self._connack  # paho reports a refused CONNACK as a protocol error
            failed = refused is not None and refused.is_failure
            self._lost(f"CONNACK {refused}" if failed else mqtt.error_string(rc))
            return
        if self._connack is not None:
            self._up(self._connack)
        if self._state == "connecting" and time.monotonic() > self._connack_deadline:
            self._lost("no CONNACK")
            return
        if self._state == "connected":
            self._pump(time.monotonic())
        self._flush_marks(force=False)
        self._check_refusals(time.monotonic())

    def _io(self, timeout: float) -> MQTTErrorCode:
        sock = self._client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes that select() cannot see.
        pending = sock.pending() if hasattr(sock, "pending") else 0
        writers = [sock] if self._client.want_write() else []
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r], writers, [], 0.0 if pending else timeout
            )
        except (OSError, ValueError):
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            self._drain_wake()
        if sock in readable or pending:
            rc = self._client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        if writable and self._client.socket() is not None:
            rc = self._client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return self._client.loop_misc()

    def _select_timeout(self, now: float) -> float:
        if self._state != "connected":
            return 0.05
        room = len(self._inflight) < self._broker.inflight
        if self._urgent and len(self._inflight) < self._broker.inflight + URGENT_EXTRA:
            return 0.0
        if room and (self._backlog_maybe or self._pending or self._resend or self._requests):
            return min(IDLE_S, self._bucket.wait_s(now))
        timeout = IDLE_S if not self._acked else MARK_EVERY_S
        due = self._refused.next_due()
        return timeout if due is None else min(timeout, max(0.0, due - now))

    def _wait(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self._wake_r], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(timeout)
            return
        if readable:
            self._drain_wake()

    def _wake(self) -> None:
        if not self._woken:
            self._woken = True
            with contextlib.suppress(OSError):  # buffer full: a wake-up is pending anyway
                self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        self._woken = False  # before reading, so a notify racing with us is not lost
        with contextlib.suppress(OSError):
            self._wake_r.recv(4096)

    # --- connection -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        b = self._broker
        v5 = b.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=b.client_id or self._cfg.device,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
        )
        # Our own window is the limit; paho's only needs room for status and alarms.
        client.max_inflight_messages_set(b.inflight + URGENT_EXTRA + 8)
        client.suppress_exceptions = True
        if b.tls:
            client.tls_set(
                ca_certs=str(self._cfg.state_path(b.ca_file)) if b.ca_file else None,
                certfile=str(self._cfg.state_path(b.cert_file)) if b.cert_file else None,
                keyfile=str(self._cfg.state_path(b.key_file)) if b.key_file else None,
            )
        if b.username:
            password = None
            if b.password_file:
                password = self._cfg.state_path(b.password_file).read_text().strip()
            client.username_pw_set(b.username, password)
        client.will_set(self._status_topic, self._offline, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
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
            delay = self._backoff.next()
            self._next_attempt = time.monotonic() + delay
            log.warning("uplink.connect_failed", error=str(exc), retry_in_s=round(delay, 2))
            return
        self._socket_up = True
        self._dropped = False
        self._connack_deadline = time.monotonic() + CONNACK_TIMEOUT_S

    def _up(self, reason: ReasonCode) -> None:
        self._connack = None
        if reason.is_failure:
            log.error("uplink.connect_refused", reason=str(reason))
            self._lost(f"CONNACK {reason}")
            return
        self._state = "connected"
        self._backoff.reset()
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
        self._socket_up = False
        self._connack = None
        if self._client.socket() is not None:
            self._client.disconnect()  # closes the socket; we reconnect (new Will) anyway
        self._dropped = False
        self._flush_marks(force=True)
        self._client.drop_out_messages()
        self._inflight.clear()
        self._inflight_seqs.clear()
        self._status_mids.clear()
        self._rewind(0)
        self._ahead.clear()
        if self._resend_rows:  # keep the unfinished part of a resend
            self._resend.appendleft((self._resend_rows[0].seq, self._resend_rows[-1].seq))
            self._resend_rows.clear()
        delay = self._backoff.next()
        self._next_attempt = time.monotonic() + delay
        if was == "connected":
            self._n["reconnects"] += 1
        log.warning("uplink.disconnected", reason=why, retry_in_s=round(delay, 2))

    def _shutdown(self) -> None:
        self._flush_marks(force=True)
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
            self._flush_marks(force=True)
            log.info("uplink.stopped", offline_acked=info.mid not in self._status_mids)
        elif self._socket_up:
            self._client.disconnect()
        self._socket_up = False

    # --- paho callbacks (uplink thread; they record facts, never raise) ----------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        props: Properties | None = None,
    ) -> None:
        self._connack = reason

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        props: Properties | None = None,
    ) -> None:
        self._dropped = True

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        props: Properties | None = None,
    ) -> None:
        try:
            if mid in self._status_mids:
                self._status_mids.discard(mid)
                if reason.is_failure:
                    log.warning("uplink.status_refused", reason=str(reason))
                return
            seq = self._inflight.pop(mid, None)
            if seq is None:
                return
            self._inflight_seqs.discard(seq)
            if reason.is_failure:
                self._refuse(seq, reason)
                return
            self._n["acked"] += 1
            if not self._acked:
                self._acked_since = time.monotonic()
            self._acked.append(seq)
            if self._refused.accepted(seq):
                log.info("uplink.publish_accepted_after_refusal", seq=seq)
        except Exception:
            self._n["errors"] += 1
            log.exception("uplink.on_publish_failed", mid=mid)

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

    # --- the drain --------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        window = self._broker.inflight
        while self._urgent and len(self._inflight) < window + URGENT_EXTRA:
            env = self._urgent.popleft()
            fresh = env.seq not in self._ahead and env.seq not in self._inflight_seqs
            if env.seq > self._cursor and fresh:
                if not self._publish(env.seq, env.type, env.payload):
                    return
                self._ahead.add(env.seq)
        while self._requests:
            self._resend.append(self._requests.popleft())
        due = []
        for seq in self._refused.pop_due(now):
            if not self._outbox.range(seq, seq):
                self._refused.accepted(seq)  # shed from the outbox meanwhile: nothing to send
            elif seq not in self._inflight_seqs:
                due.append(seq)
        if due:
            # Retry refused events by re-reading the outbox from the lowest one; marks go
            # first, else events acked meanwhile would be re-read as unsent.
            self._flush_marks(force=True)
            self._rewind(min(self._cursor, min(due) - 1))
        budget = min(window - len(self._inflight), self._bucket.available(now))
        spent = 0
        while spent < budget:
            row = self._next_resend() or self._next_backlog(now)
            if row is None:
                break
            if not self._publish(row.seq, row.type, row.payload):
                break
            spent += 1
        self._bucket.spend(spent)

    def _next_resend(self) -> Stored | None:
        while True:
            while not self._resend_rows and self._resend:
                lo, hi = self._resend.popleft()
                hi = min(hi, self._outbox.last_seq)  # a range past the end ends here
                if lo > hi:
                    continue
                top = min(hi, lo + PAGE - 1)
                self._resend_rows.extend(self._outbox.range(lo, top))
                if top < hi:
                    self._resend.appendleft((top + 1, hi))
            if not self._resend_rows:
                return None
            row = self._resend_rows.popleft()
            if row.seq not in self._inflight_seqs:
                self._n["republished"] += 1
                return row

    def _next_backlog(self, now: float) -> Stored | None:
        while True:
            if not self._pending:
                if not self._backlog_maybe:
                    return None
                self._backlog_maybe = False  # set before reading: a notify may race us
                rows = self._outbox.unsent(limit=PAGE, after_seq=self._cursor)
                if not rows:
                    return None
                self._backlog_maybe = True
                self._pending.extend(rows)
            row = self._pending.popleft()
            self._cursor = row.seq
            if row.seq in self._ahead:
                self._ahead.discard(row.seq)
                continue
            if row.seq in self._inflight_seqs or self._refused.waiting(row.seq, now):
                continue
            return row

    def _rewind(self, cursor: int) -> None:
        self._cursor = cursor
        self._pending.clear()
        self._backlog_maybe = True

    def _publish(self, seq: int, event_type: str, payload: bytes) -> bool:
        topic = wire.event_topic(
            self._cfg.topic_prefix, self._cfg.site, self._cfg.device, event_type
        )
        info = self._client.publish(topic, payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._dropped = True  # the next step notices and reconnects
            return False
        self._inflight[info.mid] = seq
        self._inflight_seqs.add(seq)
        self._n["published"] += 1
        return True

    def _flush_marks(self, force: bool) -> None:
        if not self._acked:
            return
        if (
            force
            or len(self._acked) >= MARK_BATCH
            or (time.monotonic() - self._acked_since >= MARK_EVERY_S)
        ):
            try:
                self._outbox.mark_sent(self._acked)
            except sqlite3.Error as exc:
                # Kept for the next try; at worst a restart republishes them (dedup by seq).
                self._n["errors"] += 1
                log.error("uplink.mark_failed", error=str(exc), count=len(self._acked))
                return
            self._acked = []

    # --- refused publishes (MQTT 5 PUBACK >= 0x80, e.g. 0x87 Not authorized) -----------

    def _refuse(self, seq: int, reason: ReasonCode) -> None:
        self._n["failed"] += 1
        self._ahead.discard(seq)
        refusal = self._refused.refuse(seq, str(reason), time.monotonic())
        # One warning per event; the retries are summed up by uplink.refusals_persist.
        report = log.warning if refusal.attempts == 1 else log.debug
        report("uplink.publish_refused", seq=seq, reason=refusal.reason, attempts=refusal.attempts)

    def _check_refusals(self, now: float) -> None:
        """Post SensorFault("uplink") while refusals persist, SensorRecovered when clear."""
        if now - self._last_fault_check < 1.0:
            return
        self._last_fault_check = now
        if not self._refused:
            if self._fault_posted:
                self._fault_posted = False
                log.info("uplink.refusals_cleared")
                self._post_input(SensorRecovered(sensor="uplink"))
            return
        oldest = self._refused.persisting(now)
        if oldest is None or self._fault_posted:
            return
        seq, refusal = oldest
        self._fault_posted = True
        kind = "publish_not_authorized" if "authorized" in refusal.reason else "publish_refused"
        detail = (
            f"{kind}: {len(self._refused)} events refused by the broker "
            f"({refusal.reason}) since seq {seq}"
        )
        log.error("uplink.refusals_persist", refused=len(self._refused), oldest_seq=seq)
        self._post_input(SensorFault(sensor="uplink", detail=detail))
