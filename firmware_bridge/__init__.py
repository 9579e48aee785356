"""Serial protocol to the cabinet's microcontroller (spec: docs/firmware-bridge.md).

- `firmware_bridge.messages`: the messages and their payload layouts;
- `firmware_bridge.protocol`: sans-I/O framing (COBS, CRC-16/CCITT-FALSE), `Decoder`,
  `encode`, and the `Channel` that acknowledges, retransmits and drops duplicates;
- `firmware_bridge.link`: `McuLink`, the agent's pyserial end (one thread);
- `firmware_bridge.mcu_sim`: `McuFirmware`, the reference behaviour of the firmware, and
  `McuSimulator`, which runs it on a pty (`python -m firmware_bridge` for manual tests).
"""

from firmware_bridge.messages import PROTOCOL_VERSION, Message
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
