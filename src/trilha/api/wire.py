"""JSON the API accepts into the store: checked at the door, so that a request that
the store could not keep as it is answers 422 naming the field, rather than
failing at commit (or coming back changed: a float where an integer was)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

from trilha.core.budget import INT_MAX, INT_MIN

#: the deepest nesting of objects and lists accepted in variables and payloads
MAX_JSON_DEPTH = 32


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (a lone surrogate is not)") from None
    return text


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` if the store can keep it as JSON and give it back unchanged: integers of
    64 bits, finite numbers, valid Unicode, nested at most :data:`MAX_JSON_DEPTH` deep.
    Checked at the door so that a request answers 422, not a failure at commit."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError("integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, str):
        _unicode(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _unicode(str(key))
            storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            storable(item, depth + 1)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(storable)]
Text = Annotated[str, AfterValidator(_unicode)]
