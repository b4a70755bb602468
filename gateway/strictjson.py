"""JSON read and written strictly: no NaN or Infinity (they are not JSON, and a record or a card holding one makes
every page that contains it unreadable to a strict client), no unpaired surrogates, bounded nesting.

Every network input (WebSocket messages, REST bodies) is read with `loads`; every REST response is written with
`dumps`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32


class StrictJSONError(ValueError):
    """The text is not strict JSON; `reason` says why, for a person."""

    def __init__(self, reason: str, syntax: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.syntax = syntax  # False: well-formed JSON whose text is not valid Unicode


def _no_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {text[:32]} is too large")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def check(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Walk a decoded value (without recursion): nesting depth, unpaired surrogates, non-finite floats."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                raise StrictJSONError("a string holds an unpaired UTF-16 surrogate", syntax=False)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise StrictJSONError("NaN and Infinity are not JSON numbers")
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise StrictJSONError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and _has_surrogate(key):
                        raise StrictJSONError("a key holds an unpaired UTF-16 surrogate", syntax=False)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads that refuses NaN/Infinity, overflowing numbers, unpaired surrogates and deep nesting, raising
    StrictJSONError (a ValueError) for each, never RecursionError."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise StrictJSONError("the text is not UTF-8") from None
    except ValueError as exc:
        raise StrictJSONError(f"not valid JSON ({exc})" if isinstance(exc, json.JSONDecodeError)
                              else "not valid JSON") from None
    check(value, max_depth)
    return value


def finite(value: Any) -> Any:
    """A copy of a decoded value with every NaN or Infinity replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity (not JSON): such a value (from data stored before it was refused
    at the input) is written as null."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **kwargs)
