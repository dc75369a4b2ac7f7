"""What reaches an operator's terminal: stored text is shown, never obeyed.

Contacts, institutions' flows and remote services write the text trilha stores
(message texts, variables, error messages, node ids, reasons) and the CLI prints
it. A terminal obeys what it prints: ``ESC ] 52`` writes the clipboard, ``ESC [ 2J``
clears the screen, a C1 ``CSI`` (U+009B) starts a sequence on some terminals, a
bidi override (U+202E) makes the rest of a line read backwards, and a newline
inside one field forges a line of a one-line-per-entry listing. Rich markup in
stored text (``[red]``, ``[link=...]``) would be obeyed by the console as well.

* :func:`visible` writes each such character as a visible escape (``\\x1b``,
  ``\\x9b``, ``\\u202e``, ``\\n``), the way Python writes them, and leaves every
  other character as it is (accents, emoji, other scripts);
* :func:`field` is one stored value for a rich markup string: visible, newlines
  included, and its markup made literal;
* :class:`SafeConsole` is the console every CLI print goes through: whatever a
  caller passed (markup, a :class:`~rich.text.Text`, a table, a traceback), no
  control character of it reaches the terminal. Newlines stay there (they are the
  display's own lines); inside one field :func:`field` escaped them already;
* :func:`json_text` is JSON safe on a terminal: the encoder escapes C0 controls,
  and this escapes DEL, C1, bidi controls and lone surrogates as well (``\\u009b``).

A backslash typed by a contact is printed as it is: the escapes of the first
kind are unambiguous in the ``--json`` outputs, which are exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.console import (
    Console,
    ConsoleOptions,
    HighlighterType,
    JustifyMethod,
    OverflowMethod,
    RenderableType,
)
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from rich.table import Column
from rich.text import Text

__all__ = ["SafeConsole", "field", "json_text", "visible", "whole_column"]

#: the characters a terminal may obey or that disguise text, besides C0 (below 0x20):
#: DEL, C1, the Arabic letter mark, LRM/RLM, line and paragraph separators, the bidi
#: embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069), and lone
#: surrogates (which no terminal encoding can even write)
_WIDE: tuple[range, ...] = (
    range(0x7F, 0xA0),
    range(0x061C, 0x061D),
    range(0x200E, 0x2010),
    range(0x2028, 0x202F),
    range(0x2066, 0x206A),
    range(0xD800, 0xE000),
)
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(codepoint: int) -> str:
    if codepoint in _NAMED:
        return _NAMED[codepoint]
    return f"\\x{codepoint:02x}" if codepoint < 0x100 else f"\\u{codepoint:04x}"


_UNSAFE = [*range(0x20), *(c for r in _WIDE for c in r)]
#: every unsafe character as its visible escape
_FIELD = {c: _escape(c) for c in _UNSAFE}
#: the same, keeping newlines: the line structure of what the CLI itself lays out
_LINES = {c: e for c, e in _FIELD.items() if c != 0x0A}
#: JSON escapes what ``json`` and ``orjson`` leave raw (they escape C0 already)
_JSON = {c: f"\\u{c:04x}" for r in _WIDE for c in r}


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, bidi and separator character as a visible escape;
    ``keep_newlines`` leaves ``\\n`` as a line break (for a multi-line display the
    caller laid out itself)."""
    return text.translate(_LINES if keep_newlines else _FIELD)


def field(value: object) -> str:
    """One stored value for a rich markup string: shown on one line, exactly as
    stored, with none of its characters obeyed by the terminal or by rich."""
    return escape(visible(str(value)))


def json_text(data: Any, **options: Any) -> str:
    """``json.dumps(data, ensure_ascii=False, **options)`` with DEL, C1 and bidi
    characters and lone surrogates ``\\u``-escaped too: valid JSON that decodes to
    the same values, readable (accents stay as they are) and harmless on a terminal."""
    return escaped_json(json.dumps(data, ensure_ascii=False, **options))


def escaped_json(encoded: str) -> str:
    """JSON text (from any encoder that escapes C0 itself) with DEL, C1, bidi and
    separator characters and lone surrogates ``\\u``-escaped. Those characters occur
    only inside JSON strings, so escaping them in the encoded text is exact."""
    return encoded.translate(_JSON)


def whole_column(header: str, values: Iterable[str | None]) -> Column:
    """A table column whose values are never wrapped nor cut however narrow the
    terminal: times (``2026-12-07T22:01:09.234Z``: a time read in two halves, or with an
    ellipsis for its seconds, is a time misread) and ids a command takes back (a key's
    id for ``keys revoke``). At least as wide as its longest value, so the table's other
    columns give way (they wrap) instead; on a terminal narrower than these columns and
    the others' narrowest, the line runs past its edge whole."""
    widest = max((len(v) for v in values if v), default=0)
    return Column(header, no_wrap=True, min_width=max(widest, len(header)))


class SafeConsole(Console):
    """A rich console that never passes a control character of what it prints.

    Strings are made visible before rich parses their markup, so that tables
    measure the width they will print at; every segment rendered from anything
    else (a :class:`~rich.text.Text`, a traceback, JSON) is made visible on its
    way out. Rich's own styles and cursor moves (control segments) are untouched:
    they are not text."""

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            visible(text, keep_newlines=True),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=emoji,
            markup=markup,
            highlight=highlight,
            highlighter=highlighter,
        )

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None:
                text = segment.text.translate(_LINES)
                if text != segment.text:
                    segment = Segment(text, segment.style)
            yield segment
