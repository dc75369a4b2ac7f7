"""Dotted variable paths, shared by expressions, templates and flow validation.

A flow author writes ``customer.address.city`` or ``items.0.name`` to reach
into the conversation variables. Those variables are JSON-shaped data that
came from users and remote services, so this module only ever looks into
``dict``, ``list`` and ``tuple`` values: it never calls ``getattr`` and never
indexes an arbitrary object, which is what keeps ``x.__class__`` inert.

An absent value is reported as :data:`MISSING` rather than ``None`` because a
variable that is present and set to ``null`` is a different fact from a
variable that was never set, and flow validation and ``set`` nodes need to
tell the two apart. Callers that do not care map ``MISSING`` to ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MISSING", "READ_ONLY", "is_valid_path", "read_only", "resolve_path"]


class _Missing:
    """The type of :data:`MISSING`; private so no second instance is ever made."""

    __slots__ = ()
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        # A singleton, so ``value is MISSING`` stays true after copies and pickles.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        # Falsy, so ``resolve_path(...) or default`` reads naturally.
        return False

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self

    def __reduce__(self) -> str:
        # Unpickling looks the module global up again instead of building a twin.
        return "MISSING"


MISSING: Final = _Missing()
"""The value at a path that does not exist (distinct from a stored ``None``)."""

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_RE: Final = re.compile(rf"{_IDENTIFIER}(?:\.(?:{_IDENTIFIER}|[0-9]+))*")

# A list never holds more than this many items, so a longer digit run cannot be
# an index; checking the length first also avoids int()'s 4,300-digit limit.
_MAX_INDEX_DIGITS: Final = 18


def is_valid_path(path: str) -> bool:
    """Tell whether ``path`` is well formed, so flows can be rejected at load time.

    Segments are identifiers or non-negative integers (list indexes); the first
    must be an identifier because the variables themselves are a mapping.
    """
    return _PATH_RE.fullmatch(path) is not None


def resolve_path(variables: Mapping[str, Any], path: str) -> Any:
    """Return the value at the dotted ``path``, or :data:`MISSING`.

    Absence is a value, not an exception: a condition or template that reads a
    variable the conversation never set must still run. A segment made of
    digits indexes a list or tuple; on a dict it is an ordinary string key,
    because JSON object keys are always strings.
    """
    first, *rest = path.split(".")
    if first not in variables:
        return MISSING
    current: Any = variables[first]
    for segment in rest:
        if isinstance(current, dict):
            if segment not in current:
                return MISSING
            current = current[segment]
        elif isinstance(current, list | tuple):
            if not (segment.isascii() and segment.isdigit()):
                return MISSING
            if len(segment) > _MAX_INDEX_DIGITS:
                return MISSING
            index = int(segment)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


#: why a write under ``sys`` is refused, wherever it is asked for
READ_ONLY = "sys.* is read-only (trilha sets it)"


def read_only(path: str) -> bool:
    """Whether ``path`` lies under ``sys``, the values trilha computes for each step: a
    flow, an operator or a handback may read them, never write them."""
    return path == "sys" or path.startswith("sys.")
