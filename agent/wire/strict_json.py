"""The one JSON reader for everything that crosses the wire: strict, bounded, typed errors.

Two parsers can disagree on which of two equal keys wins; a signature checked over one
reading must not be acted on (or shown to a person) as the other, so duplicate keys are
refused. Floats (and NaN, Infinity) have no canonical form to sign, so they are refused
while parsing. Bytes must be UTF-8 (json.loads would also guess UTF-16/32), and nesting
is bounded (MAX_DEPTH) so a hostile payload costs neither recursion nor time.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from agent.wire.encoding import MAX_DEPTH, MalformedJson, first_problem


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `raw` strictly; raise MalformedJson saying why it is refused."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"not JSON: {exc}") from None
    # Depth is measured before parsing: json.loads recurses once per level, and a payload
    # nested thousands deep would run the interpreter to its recursion limit, where even
    # a finaliser that happens to run fails. Nesting is at most the number of `{` and `[`
    # (those inside strings only add to the count): below the limit there is nothing to
    # scan (an envelope has ~3). An item's depth counts its enclosing brackets (the top
    # is at 0), so brackets nested limit+1 deep are too deep only if the innermost holds
    # an item: that one case is decided by walking the parsed (shallow) value.
    openers = text.count("{") + text.count("[")
    nesting = _nesting(text) if openers > max_depth else 0
    if nesting > max_depth + 1:
        raise MalformedJson("nested too deep")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except MalformedJson:
        raise
    except (ValueError, TypeError) as exc:
        raise MalformedJson(f"not JSON: {exc}") from None
    if nesting == max_depth + 1 and first_problem(value, limit=max_depth) is not None:
        raise MalformedJson("nested too deep")
    return value


# The characters that matter to nesting: an escape pair (so `\"` does not end a string),
# a quote, a bracket. One pass, no backtracking, whatever the text.
_NESTING_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _nesting(text: str) -> int:
    """How deep the brackets outside strings go: the depth json.loads would recurse to."""
    depth = deepest = 0
    in_string = False
    for match in _NESTING_TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


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
