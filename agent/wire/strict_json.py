"""The one JSON reader for everything that crosses the wire: strict, bounded, typed errors.

Two parsers can disagree on which of two equal keys wins; a signature checked over one
reading must not be acted on (or shown to a person) as the other, so duplicate keys are
refused. Floats (and NaN, Infinity) have no canonical form to sign, so they are refused
while parsing. Bytes must be UTF-8 (json.loads would also guess UTF-16/32), and nesting
is bounded (MAX_DEPTH) so a hostile payload costs neither recursion nor time.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from agent.wire.encoding import MAX_DEPTH, MalformedJson, first_problem


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `raw` strictly; raise MalformedJson saying why it is refused."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except MalformedJson:
        raise
    except RecursionError:
        raise MalformedJson("nested too deep") from None
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedJson(f"not JSON: {exc}") from None
    # Floats were refused while parsing and JSON keys are strings: only depth is left.
    # Nesting is at most the number of `{` and `[` in the text (those inside strings only
    # add to the count): below the limit there is nothing to walk (an envelope has ~3).
    if _openers(text) > max_depth and first_problem(value, limit=max_depth) is not None:
        raise MalformedJson("nested too deep")
    return value


def _openers(text: str) -> int:
    return text.count("{") + text.count("[")


def parse_json_object(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    value = parse_json(raw, max_depth=max_depth)
    if not isinstance(value, dict):
        raise MalformedJson("not a JSON object")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MalformedJson(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_float(text: str) -> NoReturn:
    raise MalformedJson(f"floats are not allowed on the wire ({text[:20]})")
