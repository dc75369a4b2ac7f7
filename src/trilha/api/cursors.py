"""The listings' page cursors: opaque to a client (URL-safe base64 of a JSON array),
read back only as the listing that gave them out wrote them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from trilha.api.problems import Problem

T = TypeVar("T")


def encode_cursor(*position: Any) -> str:
    """The cursor of a page's last row, from the values its listing orders by."""
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode_cursor(cursor: str, position: Callable[[Any], T]) -> T:
    """What ``position`` makes of the cursor's values (raising ValueError or TypeError
    for values its listing never wrote); 422 naming ``query.cursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return position(orjson.loads(raw))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise Problem(
            422,
            "the cursor is not one this API gave out",
            kind="invalid",
            errors=[{"field": "query.cursor", "message": "pass nextCursor as it was given"}],
        ) from None
