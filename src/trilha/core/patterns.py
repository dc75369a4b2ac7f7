"""Regular expressions that flows write and contacts' replies are matched against.

A question's ``validate: {"kind": "regex"}`` pattern comes from an institution and
the text from the public; Python's backtracking engine takes exponential time on
patterns such as ``(a+)+$`` and blocked the event loop for 41 s on a 31-character
reply. RE2 (``google-re2``) matches in time linear in the text, and refuses what it
cannot do that way (back-references, look-arounds): such a pattern is a
validation error when the flow is published, not a surprise when a contact
answers. The compiled program's size is bounded too (:data:`MAX_PROGRAM_SIZE`),
since the matching time grows with it; patterns are compiled without capturing
groups (only match or no match is needed), which keeps RE2 on its fastest path.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import re2

__all__ = ["MAX_PROGRAM_SIZE", "compile_pattern", "full_match"]

#: RE2's measure of a compiled pattern; a CPF or phone pattern is under 100, a
#: thorough e-mail pattern about 1,200. A 4,096-character reply takes < 5 ms at it.
MAX_PROGRAM_SIZE: Final = 2_000

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is our error message, not a line on stderr
_OPTIONS.never_capture = True
_OPTIONS.max_mem = 8 << 20  # the DFA cache per pattern


@functools.lru_cache(maxsize=1_024)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern, or :class:`ValueError` saying why RE2 refuses it."""
    try:
        compiled = re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        hint = ""
        if "perl operator" in str(reason) or "escape" in str(reason):
            hint = " (back-references and look-arounds are not supported)"
        raise ValueError(
            f"pattern is not accepted by the linear-time engine (RE2): {reason}{hint}"
        ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(
            f"pattern is too complex: its program size is {compiled.programsize},"
            f" the limit is {MAX_PROGRAM_SIZE} (simplify its repetitions)"
        )
    return compiled


def full_match(pattern: str, text: str) -> bool:
    """Whether the whole of ``text`` matches ``pattern`` (compiled once, cached)."""
    return compile_pattern(pattern).fullmatch(text) is not None
