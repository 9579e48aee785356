"""The numbers of the cabinet MCU protocol (docs/firmware-bridge.md §4): its version, the
payload bound, message ids and the enumerations the payloads carry.

Kept apart from the payload layouts (firmware_bridge.messages, which re-exports them) so
that a reader of the firmware's tables finds them on one page.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

PROTOCOL_VERSION = 1
# Largest payload of any frame. It bounds the decoder's buffer (garbage cannot grow
# memory) and fits a 256-byte receive buffer on the MCU, COBS overhead included.
MAX_PAYLOAD = 250


class PayloadError(ValueError):
    """A payload that does not match its message's layout or value ranges."""


class MsgId(IntEnum):
    HELLO = 0x01  # agent -> MCU
    INFO = 0x02  # MCU -> agent
    HEARTBEAT = 0x03  # both ways
    ACK = 0x04  # both ways
    NACK = 0x05  # both ways
    LOCK = 0x10  # agent -> MCU
    OUTPUT = 0x11  # agent -> MCU
    WEIGHTS = 0x20  # MCU -> agent
    DOOR = 0x21  # MCU -> agent
    LOCK_STATE = 0x22  # MCU -> agent
    TAMPER = 0x23  # MCU -> agent
    LEAK = 0x24  # MCU -> agent
    FAULT = 0x25  # MCU -> agent


class NackReason(IntEnum):
    BAD_PAYLOAD = 1  # CRC was good but the payload does not parse
    UNKNOWN_MESSAGE = 2  # message id not known, or not accepted in this direction
    UNSUPPORTED_VERSION = 3  # HELLO asked for a protocol version the MCU does not speak
    NOT_ARMED = 4  # LOCK energise without a live agent heartbeat: refused, stays locked
    INVALID_VALUE = 5  # parses, but a value is not acceptable (e.g. energise with hold 0)


class LockCause(IntEnum):
    """Why the MCU reports the lock state: lets the audit trail tell a failsafe from a command."""

    BOOT = 0
    COMMAND = 1
    FAILSAFE = 2  # agent heartbeats stopped: relay de-energised by the MCU itself
    HOLD_EXPIRED = 3  # the LOCK command's hold time ran out
    FEEDBACK = 4  # the bolt sensor changed without a relay change (jam, forced bolt)
    RESYNC = 5  # snapshot sent after HELLO


class OutputId(IntEnum):
    FAN = 1
    BUZZER = 2
    LED_GREEN = 3
    LED_RED = 4


class FaultCode(IntEnum):
    """Known FAULT codes. Unknown codes are still delivered (newer firmware) as plain ints."""

    HEARTBEAT_LOST = 1  # detail: failsafe_ms that elapsed
    SCALE = 2  # detail: slot number
    LOCK_FEEDBACK = 3  # relay and bolt sensor disagree; detail: 1 relay on, 0 off
    BROWNOUT = 4
    WATCHDOG_RESET = 5
    INTERNAL = 6  # detail: firmware-specific


class McuStatus(IntFlag):
    """The flags of the MCU's HEARTBEAT, a snapshot for diagnostics and resync."""

    DOOR_OPEN = 0x01
    RELAY_ON = 0x02
    BOLT_ENGAGED = 0x04
    TAMPER_OPEN = 0x08
    LEAK_WET = 0x10
    FAILSAFE = 0x20  # failsafe tripped and no heartbeat since
    EVENTS_LOST = 0x40  # a reliable report was given up since the last HELLO: agent must resync
