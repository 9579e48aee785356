"""The one small interface every driver implements.

A driver turns hardware into typed inputs (`rules.inputs`) posted with `post`, and
applies the outputs the core decides. It holds no policy and makes no decision: the
same rules run whether the door is a gpiozero pin, an MCU frame or a scenario line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from rules.effects import OutputName
from rules.inputs import AnyInput

Post = Callable[[AnyInput], None]  # thread-safe: puts the input on the core's inbox


@runtime_checkable
class Driver(Protocol):
    name: str

    def start(self, post: Post) -> None:
        """Begin posting inputs. Must return promptly (start threads if needed)."""

    def outputs(self) -> frozenset[OutputName]:
        """The outputs this driver can apply (empty for input-only drivers)."""

    def apply(self, output: OutputName, on: bool) -> None:
        """Set an output. Called from the core thread after the event is durable."""

    def close(self) -> None:
        """Stop threads, release pins/ports, leave outputs in their safe state (off)."""
