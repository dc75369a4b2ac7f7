"""Budgets of the values a flow builds (DESIGN §9). Pure: no I/O.

A flow is untrusted, and so are the values it computes from what contacts and
services send. Python would happily build a list of a million references to one
100 KB string (cheap in memory until something serialises it: then gigabytes) or
square an integer until it has millions of digits. So the builders of values (the
expression evaluator, template rendering) count as they build, through a
:class:`Budget`, and stop at the first byte past the bound with
:class:`~trilha.errors.LimitExceeded` (``kind: limit``); the engine then measures
every value a node assigns exactly (:func:`check_value`) before it is kept.

Sizes are JSON bytes, the form values are stored in. While building, a cheap
lower bound serves (a string counts its characters): it can only under-count, so
whatever the builder lets through is re-measured exactly by the engine, and a
value that the estimate stops is certainly too large.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from trilha.errors import LimitExceeded

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "INT_MAX",
    "INT_MIN",
    "Budget",
    "check_int",
    "check_value",
    "json_bytes",
]

#: integers are 64-bit signed, as in every store and most JSON readers
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
#: the default of ``[engine] max_value_bytes``, for builders called without a budget
DEFAULT_MAX_VALUE_BYTES: Final = 65_536


def check_int(value: int, what: str = "integer") -> int:
    """``value`` if it fits in 64 bits, else :class:`LimitExceeded`."""
    if not INT_MIN <= value <= INT_MAX:
        raise LimitExceeded(f"{what} does not fit in 64 bits (at most {INT_MAX})")
    return value


class Budget:
    """What a value under construction may still grow by.

    One budget spans one value (a ``set`` node's expression, a rendered message,
    a request body), so its parts share the bound. Lists the builder made itself
    are remembered with their size, so a list nested in another is not walked
    again at every level.
    """

    __slots__ = ("_known", "limit", "spent", "what")

    def __init__(self, limit: int = DEFAULT_MAX_VALUE_BYTES, what: str = "value") -> None:
        self.limit = limit
        self.what = what
        self.spent = 0
        # id -> (the object, kept alive so its id is not reused, and its size)
        self._known: dict[int, tuple[Any, int]] = {}

    def fail(self) -> LimitExceeded:
        return LimitExceeded(
            f"{self.what} is larger than {self.limit} bytes (the limit, max_value_bytes)",
            limit=self.limit,
        )

    def spend(self, size: int) -> None:
        """Count ``size`` more bytes of the value being built."""
        self.spent += size
        if self.spent > self.limit:
            raise self.fail()

    def check(self, size: int) -> int:
        """``size`` if one value of that size fits the bound on its own."""
        if size > self.limit:
            raise self.fail()
        return size

    def size_of(self, value: Any) -> int:
        """A lower bound of ``value``'s JSON size, walked only until it passes the
        limit (so a huge value costs no more to refuse than a small one to accept)."""
        total = 0
        stack = [value]
        while stack:
            item = stack.pop()
            known = self._known.get(id(item))
            if known is not None and known[0] is item:
                total += known[1]
            elif isinstance(item, str):
                total += len(item) + 2
            elif isinstance(item, bool) or item is None:
                total += 4
            elif isinstance(item, int):
                total += 1 + len(str(check_int(item)))
            elif isinstance(item, float):
                total += 3
            elif isinstance(item, list | tuple):
                total += 1 + len(item)
                stack.extend(item)
            elif isinstance(item, dict):
                total += 1 + 2 * len(item)
                for key, child in item.items():
                    total += len(str(key)) + 2
                    stack.append(child)
            else:
                total += 1
            if total > self.limit:
                raise self.fail()
        return total

    def built(self, value: list[Any], size: int) -> list[Any]:
        """Remember a list this builder made and its size; returns it."""
        self._known[id(value)] = (value, size)
        return value


def json_bytes(value: Any) -> int:
    """The exact size of ``value`` stored as JSON; :class:`LimitExceeded` for an
    integer beyond 64 bits (which no store would keep)."""
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as exc:
        if "Integer exceeds 64-bit range" in str(exc):
            raise LimitExceeded("a number does not fit in 64 bits") from None
        raise


def check_value(name: str, value: Any, max_bytes: int) -> int:
    """The JSON size of a value about to be assigned to variable ``name``, or
    :class:`LimitExceeded` naming the variable when it is too large or holds an
    integer beyond 64 bits."""
    Budget(max_bytes, f"the value of '{name}'").size_of(value)  # ints, and a cheap early no
    size = json_bytes(value)
    if size > max_bytes:
        raise LimitExceeded(
            f"the value of '{name}' is {size} bytes; the limit is {max_bytes} (max_value_bytes)",
            variable=name,
            limit=max_bytes,
        )
    return size
