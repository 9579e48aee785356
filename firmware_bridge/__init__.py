"""Serial protocol to the cabinet's microcontroller (spec: docs/firmware-bridge.md).

- `firmware_bridge.codes`: the protocol's numbers (version, message ids, enumerations);
- `firmware_bridge.messages`: the messages and their payload layouts;
- `firmware_bridge.protocol`: sans-I/O framing (COBS, CRC-16/CCITT-FALSE), `Decoder`,
  `encode`, and the `Channel` that acknowledges, retransmits and drops duplicates;
- `firmware_bridge.link`: `McuLink`, the agent's pyserial end (one thread);
- `firmware_bridge.mcu_firmware`: `McuFirmware`, the reference behaviour of the firmware;
- `firmware_bridge.mcu_sim`: `McuSimulator`, which runs it on a pty (`python -m
  firmware_bridge` for manual tests).
"""

from firmware_bridge.codes import PROTOCOL_VERSION
from firmware_bridge.messages import Message
from firmware_bridge.protocol import Decoder, Frame, FrameError, decode_frame, encode

__all__ = [
    "PROTOCOL_VERSION",
    "Decoder",
    "Frame",
    "FrameError",
    "Message",
    "decode_frame",
    "encode",
]
