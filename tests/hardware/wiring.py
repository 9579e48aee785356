"""The cabinet's GPIO lines on gpiozero's MockFactory, with the wiring modelled.

A closed contact holds its line at the contact's level, an open one lets the pull
resistor decide (MockPin alone lets the pull resistor win at set-up, so an NC door loop
would read "open" the moment the driver claims the line). Output changes can be watched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin


class ContactPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A MockPin with a contact on it, and a hook on every change of an output's level."""

    def __init__(self, factory: Any, info: Any) -> None:
        self.held: bool | None = None  # level a closed contact holds; None: contact open
        super().__init__(factory, info)

    def close_contact(self, level: bool = False) -> None:
        """Close the contact: it holds the line at `level` (ground by default)."""
        self.held = level
        if self.function == "input":
            self._drive(level)

    def open_contact(self) -> None:
        """Open the contact: the pull resistor decides the level again."""
        self.held = None
        if self.function == "input" and self.pull in ("up", "down"):
            self._drive(self.pull == "up")

    def _drive(self, level: bool) -> None:
        if level:
            self.drive_high()
        else:
            self.drive_low()

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        if self.held is not None:  # a closed contact is stronger than a pull resistor
            self._drive(self.held)

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed and self.function == "output":
            watcher = self._factory.watchers.get(self._number)
            if watcher is not None:
                watcher(value)
        return changed

    def levels(self) -> list[bool]:
        """The line's level history (gpiozero's `states`, without the timestamps)."""
        return [bool(state.state) for state in self.states]


class CabinetPins(MockFactory):  # type: ignore[misc]
    """gpiozero's MockFactory making ContactPins; `watch(pin, fn)` sees output changes."""

    def __init__(self) -> None:
        super().__init__(pin_class=ContactPin)
        self.watchers: dict[int, Callable[[bool], None]] = {}

    def line(self, number: int) -> ContactPin:
        pin = self.pin(number)
        assert isinstance(pin, ContactPin)
        return pin

    def watch(self, number: int, watcher: Callable[[bool], None]) -> None:
        self.watchers[number] = watcher
