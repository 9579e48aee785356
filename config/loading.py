"""Loading TOML into pydantic models with errors a person can act on.

Every failure names the file, the key (as a dotted path), the line when it can be found,
and the problem. The CLI prints `ConfigError` and exits 78 (EX_CONFIG), never a traceback.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

EX_CONFIG = 78

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    key: str  # dotted path, e.g. "person[1].cards"; "" for the whole file
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [Problem("", f"cannot read: {exc}")]) from None
    return text, parse_toml(source, text)


def parse_toml(source: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(source, [Problem("", f"not valid TOML: {exc}", line)]) from None


def validate(model: type[M], data: dict[str, Any], source: str, text: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_from(exc, text)) from None


def load_model(model: type[M], path: Path) -> M:
    text, data = read_toml(path)
    return validate(model, data, str(path), text)


def problems_from(exc: ValidationError, text: str = "") -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (misspelt, or not supported)"
        elif error["type"] == "missing":
            message = "required key is missing"
        if not loc:
            # Model-level checks put the path at the start of their message.
            match = re.match(r"^([a-z_]+)\[(\d+)\]\.([a-z_]+)\b", message)
            if match:
                loc = (match.group(1), int(match.group(2)), match.group(3))
        line = locate(text, loc) if text else None
        named = _NAMED_FIELD.match(message)
        if named and text:
            # A nested model's own check ("lock_relay: GPIO 5 is ...") names its field:
            # point at that field's line, as a field's own error would (file:line: key:).
            parts = named.group(1).split(".")
            field_line = locate(text, (*loc, parts[0]))
            if field_line is not None:
                loc, line = (*loc, *parts), field_line
                message = message[named.end() :]
        problems.append(Problem(dotted(loc), message, line))
    return problems


_NAMED_FIELD = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def locate(text: str, loc: Sequence[int | str]) -> int | None:
    """Best-effort line of a key in a TOML text, for `problem at line N` messages.

    Handles the shapes our files use: top-level keys, `[table]` keys and the N-th
    `[[array]]` entry's keys. Returns None where it cannot tell, never a wrong guess
    of a different key.
    """
    table: list[str] = []
    index = 0
    want_table = [p for p in loc[:-1] if isinstance(p, str)]
    want_index = next((p for p in loc if isinstance(p, int)), None)
    key = loc[-1] if loc and isinstance(loc[-1], str) else None
    header_line: int | None = None
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = header.group(1).split(".")
            name = header.group(1)
            index = counts.get(name, 0)
            counts[name] = index + 1
            if table == want_table and (want_index is None or index == want_index):
                header_line = number
            continue
        matched = _KEY.match(line)
        if not matched or key is None:
            continue
        in_table = table == want_table and (want_index is None or index == want_index)
        if in_table and matched.group(1) == key:
            return number
    if key is not None and not want_table and want_index is None:
        return None
    return header_line
