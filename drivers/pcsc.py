"""The two ID-card readers (A and B) through PC/SC, with pyscard's low-level API.

One thread owns one PC/SC context and waits in `SCardGetStatusChange` on both readers
and the PnP pseudo-reader. pyscard's CardMonitor is not used: it is a process-wide
thread that never stops and dies for good when pcscd restarts, which happens on a
real Pi (package upgrades, USB resets). This loop instead treats a lost service or a
vanished reader as a `ReaderFault`, keeps trying to reach pcscd, and posts
`ReaderRecovered` once it watches the reader again.

One badge per presentation: pcsc-lite counts card insertions and removals in the upper
16 bits of the reader's event state, so a card that is lifted and put back between
two polls is still a new presentation, while a card left lying there never repeats.
A card already on the reader when the loop (re)gains a reader is not a badge: nobody
presented it now, and a restart of pcscd must not replay the last person's badge.

UIDs are read with GET DATA (`FF CA 00 00 00`), the PC/SC part 3 pseudo-APDU every
contactless reader driver answers. Logs carry only the last four hex digits.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import structlog
from smartcard import scard

from config.hardware import ReadersConfig
from drivers.base import Post
from rules.effects import OutputName
from rules.inputs import AnyInput, Badge, ReaderFault, ReaderName, ReaderRecovered

log = structlog.get_logger("drivers.pcsc")

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
SW_OK = [0x90, 0x00]
_GONE = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE
# Errors that mean "this reader went away", not "pcscd went away".
_READER_ERRORS = (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE)


def mask_uid(uid: str) -> str:
    """A card UID as logs may show it: all but the last four hex digits hidden."""
    return "*" * max(0, len(uid) - 4) + uid[-4:]


def pcsc_error(code: int) -> str:
    return f"{scard.SCardGetErrorMessage(code).rstrip('.')} (0x{code & 0xFFFFFFFF:08X})"


@dataclass
class _ReaderSlot:
    """What the loop knows about reader A or B."""

    reader: ReaderName
    pattern: re.Pattern[str]
    pcsc_name: str | None = None  # the PC/SC reader currently bound to this slot
    event_state: int = scard.SCARD_STATE_UNAWARE
    baseline: bool = True  # next status sets what is already there, posts no badge
    card_events: int | None = None  # pcsc-lite's event count of the card last seen
    fault: str | None = None  # the fault last posted, None while healthy


class PcscReaders:
    """Readers A and B; `PcscReaders(config)`, then `start(post)`, finally `close()`."""

    name = "readers"

    def __init__(self, config: ReadersConfig) -> None:
        self.config = config
        self._slots = [
            _ReaderSlot("A", re.compile(config.a_pattern)),
            _ReaderSlot("B", re.compile(config.b_pattern)),
        ]
        self._post: Post | None = None
        self._stop = threading.Event()
        self._context_lock = threading.Lock()
        self._context: int | None = None
        self._relist = True
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._pnp_supported = True
        self._service_down = False
        self._thread: threading.Thread | None = None
        self.badges = 0
        self.read_failures = 0
        self.service_losses = 0
        self.cards_present_at_start = 0
        self.post_failures = 0
        self.loop_errors = 0

    def counters(self) -> dict[str, int]:
        names = ("badges", "read_failures", "service_losses", "cards_present_at_start")
        return {name: getattr(self, name) for name in (*names, "post_failures", "loop_errors")}

    def live_readers(self) -> frozenset[ReaderName]:
        """Readers watched right now: bound, looked at once, not faulted.

        A card put down before its reader is live counts as already there, not as a
        badge; tests and health checks wait for this before presenting cards.
        """
        return frozenset(
            slot.reader
            for slot in self._slots
            if slot.pcsc_name is not None and not slot.baseline and slot.fault is None
        )

    def outputs(self) -> frozenset[OutputName]:
        return frozenset()

    def apply(self, output: OutputName, on: bool) -> None:
        raise ValueError(f"card readers drive no output ({output!r})")

    def start(self, post: Post) -> None:
        if self._thread is not None:
            raise RuntimeError("PcscReaders can be started once")
        self._post = post
        self._thread = threading.Thread(target=self._run, name="pcsc-readers", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._context_lock:
            if self._context is not None:
                # Wakes the loop out of SCardGetStatusChange at once.
                scard.SCardCancel(self._context)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.config.poll_timeout_ms / 1000 + 5)
            if self._thread.is_alive():
                log.error("reader.thread_stuck")

    # -- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:  # a bug or an odd pyscard error must not end badging
                    self.loop_errors += 1
                    log.exception("reader.loop_error")
                    self._restart_session(f"reader loop error: {exc!r}")
                    self._stop.wait(self.config.reconnect_ms / 1000)
        finally:
            self._release_context()
            log.info("reader.stopped")

    def _step(self) -> None:
        if self._context is None and not self._establish():
            self._stop.wait(self.config.reconnect_ms / 1000)
            return
        if self._relist or any(slot.pcsc_name is None for slot in self._slots):
            self._bind_readers()
        if self._context is not None:
            self._wait_for_change()

    def _establish(self) -> bool:
        hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hr != scard.SCARD_S_SUCCESS:
            if not self._service_down:
                log.warning("reader.service_unavailable", error=pcsc_error(hr))
            self._service_down = True
            for slot in self._slots:
                self._fault(slot, f"pcscd unavailable: {pcsc_error(hr)}")
            return False
        if self._service_down:
            log.info("reader.service_back")
        self._service_down = False
        with self._context_lock:
            self._context = context
        self._relist = True
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._pnp_supported = True
        return True

    def _release_context(self) -> None:
        with self._context_lock:
            context, self._context = self._context, None
        if context is None:
            return
        hr = scard.SCardReleaseContext(context)
        # After pcscd died the release fails by nature; anything else is worth a line.
        if hr not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_NO_SERVICE, scard.SCARD_F_COMM_ERROR):
            log.warning("reader.release_failed", error=pcsc_error(hr))

    def _lose_service(self, hr: int) -> None:
        self.service_losses += 1
        log.warning("reader.service_lost", error=pcsc_error(hr))
        self._restart_session(f"pcscd unavailable: {pcsc_error(hr)}")

    def _restart_session(self, detail: str) -> None:
        """Drop the context and every binding; the loop starts over from pcscd."""
        self._release_context()
        for slot in self._slots:
            self._unbind(slot)
            self._fault(slot, detail)

    def _bind_readers(self) -> None:
        assert self._context is not None
        hr, names = scard.SCardListReaders(self._context, [])
        if hr == scard.SCARD_E_NO_READERS_AVAILABLE:
            names = []
        elif hr != scard.SCARD_S_SUCCESS:
            self._lose_service(hr)
            return
        self._relist = False
        taken: set[str] = set()
        for slot in self._slots:
            # A reader matched by A's pattern is not also B's: two slots, two readers.
            found = next((n for n in names if slot.pattern.search(n) and n not in taken), None)
            if found is not None:
                taken.add(found)
            if found != slot.pcsc_name:
                self._unbind(slot)
                slot.pcsc_name = found
                if found is not None:
                    log.info("reader.bound", reader=slot.reader, pcsc_name=found)
            if found is None:
                self._fault(slot, f"no reader matches {slot.pattern.pattern!r}")

    def _unbind(self, slot: _ReaderSlot) -> None:
        slot.pcsc_name = None
        slot.event_state = scard.SCARD_STATE_UNAWARE
        slot.baseline = True
        slot.card_events = None

    def _wait_for_change(self) -> None:
        assert self._context is not None
        bound = [slot for slot in self._slots if slot.pcsc_name is not None]
        states = [(slot.pcsc_name, slot.event_state) for slot in bound]
        if self._pnp_supported:
            states.append((PNP_NOTIFICATION, self._pnp_state))
        hr, changes = scard.SCardGetStatusChange(self._context, self.config.poll_timeout_ms, states)
        if hr in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
            return
        if hr in _READER_ERRORS:
            self._relist = True
            return
        if hr != scard.SCARD_S_SUCCESS:
            self._lose_service(hr)
            return
        by_name = {slot.pcsc_name: slot for slot in bound}
        for pcsc_name, event_state, _atr in changes:
            if pcsc_name == PNP_NOTIFICATION:
                if event_state & scard.SCARD_STATE_UNKNOWN:
                    # No hot-plug notices from this pcscd: missing readers are still
                    # looked for on every poll timeout, just not woken for.
                    self._pnp_supported = False
                    log.info("reader.no_hotplug_notification")
                elif event_state & scard.SCARD_STATE_CHANGED:
                    self._relist = True  # a reader was plugged in or pulled out
                self._pnp_state = event_state & ~scard.SCARD_STATE_CHANGED
                continue
            slot = by_name.get(pcsc_name)
            if slot is not None:
                self._reader_status(slot, event_state)

    def _reader_status(self, slot: _ReaderSlot, event_state: int) -> None:
        flags = event_state & 0xFFFF
        events = event_state >> 16
        slot.event_state = event_state & ~scard.SCARD_STATE_CHANGED
        if flags & _GONE:
            self._unbind(slot)
            self._relist = True
            self._fault(slot, "reader unavailable (unplugged?)")
            return
        present = bool(flags & scard.SCARD_STATE_PRESENT)
        if slot.baseline:
            slot.baseline = False
            slot.card_events = events if present else None
            if present:
                self.cards_present_at_start += 1
                log.info("reader.card_already_present", reader=slot.reader)
            if slot.fault is not None:
                slot.fault = None
                log.info("reader.recovered", reader=slot.reader)
                self._deliver(ReaderRecovered(slot.reader))
            return
        if not present:
            slot.card_events = None
            return
        if slot.card_events == events:
            return  # the same card still lying there
        slot.card_events = events
        if flags & scard.SCARD_STATE_MUTE:
            self.read_failures += 1
            log.warning("reader.card_mute", reader=slot.reader)
            return
        uid = self._read_uid(slot)
        if uid is not None:
            self.badges += 1
            log.info("reader.badge", reader=slot.reader, uid=mask_uid(uid))
            self._deliver(Badge(slot.reader, uid))

    def _read_uid(self, slot: _ReaderSlot) -> str | None:
        assert self._context is not None and slot.pcsc_name is not None
        hr, card, protocol = scard.SCardConnect(
            self._context,
            slot.pcsc_name,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if hr != scard.SCARD_S_SUCCESS:
            # Typically the card was lifted again already: the person presents it again.
            self.read_failures += 1
            log.warning("reader.card_read_failed", reader=slot.reader, error=pcsc_error(hr))
            return None
        try:
            hr, response = scard.SCardTransmit(card, protocol, GET_UID)
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        if hr != scard.SCARD_S_SUCCESS:
            self.read_failures += 1
            log.warning("reader.card_read_failed", reader=slot.reader, error=pcsc_error(hr))
            return None
        if len(response) < 3 or list(response[-2:]) != SW_OK:
            self.read_failures += 1
            status = bytes(response[-2:]).hex().upper()
            log.warning("reader.card_read_failed", reader=slot.reader, status_word=status)
            return None
        return bytes(response[:-2]).hex().upper()

    def _fault(self, slot: _ReaderSlot, detail: str) -> None:
        """Post a fault once per episode; the first detail names the cause."""
        if slot.fault is not None:
            return
        slot.fault = detail
        log.warning("reader.fault", reader=slot.reader, detail=detail)
        self._deliver(ReaderFault(slot.reader, detail))

    def _deliver(self, item: AnyInput) -> None:
        assert self._post is not None
        try:
            self._post(item)
        except Exception as exc:  # the inbox's failure must not end the reader loop
            self.post_failures += 1
            log.error("reader.post_failed", item=type(item).__name__, error=repr(exc))
