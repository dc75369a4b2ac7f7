"""JSON the API accepts into the store: checked at the door, so that a request that
the store could not keep as it is answers 422 naming the field, rather than
failing at commit (or coming back changed: a float where an integer was).

Text may hold anything but NUL (U+0000), which PostgreSQL cannot keep in text, and
a lone surrogate, which is not Unicode. Ids the platform makes (conversations,
contacts, messages) are printable text: no control characters (C0, DEL, C1) and none
of the invisible ones that change how the text around them reads (zero-width,
bidirectional controls, line and paragraph separators, the byte order mark), so an id
shown in a log, a terminal or the debugger is what it looks like.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator

from trilha.core.budget import INT_MAX, INT_MIN

#: the deepest nesting of objects and lists accepted in variables and payloads
MAX_JSON_DEPTH = 32

#: what a printable id may not hold, as a character class's contents: C0 controls, DEL
#: and C1 controls, the soft hyphen, the Arabic letter mark, the Mongolian vowel
#: separator, zero-width and directional marks, line and paragraph separators,
#: directional embeddings and isolates, invisible operators, the byte order mark and
#: the interlinear annotation characters (written as escapes that JSON Schema's,
#: Python's and the validator's regular expressions all read alike)
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064"
    r"\u2066-\u206f\ufeff\ufff9-\ufffb"
)
#: an id the platform makes: printable text (see the module docstring)
PRINTABLE_ID_PATTERN = rf"^[^{_INVISIBLE}]+$"
_INVISIBLE_CHAR = re.compile(f"[{_INVISIBLE}]")


def invisible_character(text: str) -> str | None:
    """The first character of ``text`` an id may not hold, named (``U+2028 at
    position 3``), or ``None``."""
    found = _INVISIBLE_CHAR.search(text)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at position {found.start()}"


#: readable reasons for the patterns whose regular expression says little to a person
#: (a 422 names the field and this, not the expression)
PATTERN_REASONS = {
    PRINTABLE_ID_PATTERN: "must be printable text: no control characters and no invisible"
    " ones (zero-width, bidirectional, line separators, byte order mark)",
}


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (a lone surrogate is not)") from None
    if "\x00" in text:
        raise ValueError(
            f"text must not contain NUL (U+0000, at position {text.index(chr(0))}):"
            " the store cannot keep it"
        )
    return text


def _where(at: str, reason: str) -> ValueError:
    return ValueError(f"{at}: {reason}" if at else reason)


def storable(value: Any, depth: int = 0, at: str = "") -> Any:
    """``value`` if the store can keep it as JSON and give it back unchanged: integers of
    64 bits, finite numbers, valid Unicode without NUL (keys too), nested at most
    :data:`MAX_JSON_DEPTH` deep. Checked at the door so that a request answers 422, not
    a failure at commit; the reason says where inside ``value`` (``at``: ``a.b[2]``)."""
    if depth > MAX_JSON_DEPTH:
        raise _where(at, f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise _where(at, "integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _where(at, "numbers must be finite")
    elif isinstance(value, str):
        try:
            _unicode(value)
        except ValueError as exc:
            raise _where(at, str(exc)) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            inner = f"{at}.{name}" if at else name
            try:
                _unicode(name)
            except ValueError as exc:
                raise _where(f"key {inner!r}", str(exc).replace("text", "a key", 1)) from None
            storable(item, depth + 1, inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            storable(item, depth + 1, f"{at}[{index}]")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(storable)]
Text = Annotated[str, AfterValidator(_unicode)]
