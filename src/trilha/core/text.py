"""How a value reads in a chat message, and how a contact's text is compared. Pure: no I/O.

Both the expression language (``text(x)``, ``join``) and template rendering
turn values into text; they live in one small module of their own so neither
has to import the other for it. :func:`fold` is here for the same reason: answers,
flow interrupts and triggers all compare a contact's words with it, and the flow
model (which the answers import) checks keywords with it.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from trilha.core.paths import MISSING

__all__ = ["fold", "to_text"]


def to_text(value: Any) -> str:
    """Format a variable the way a chat user expects to read it.

    Python's own ``str`` would show ``True``, ``None`` and ``3.0``; a message
    should say ``true``, nothing and ``3``. Containers become compact JSON so a
    debugging message shows data in the same notation the flow was written in.
    """
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    if isinstance(value, dict | list | tuple):
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            # Non-string keys or a reference cycle: still show something useful.
            return str(value)
    return str(value)


def fold(text: str) -> str:
    """Case- and accent-insensitive form, so 'Não' matches 'nao'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip(" .!")
