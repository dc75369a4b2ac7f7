"""Markdown pieces the reference pages are made of: table cells, tables, anchors.

Help texts and descriptions are written for a terminal or an editor's hover, not for
a table: a ``|`` would end the cell, a newline the row, and ``<base64>`` would vanish
as an unknown HTML tag. Every text that lands in a cell goes through :func:`cell`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: a code span: a run of backticks, anything, the same run again
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def _escape_text(text: str) -> str:
    """Outside code spans: ``|`` would split the cell, ``<`` and ``>`` open HTML."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _outside_code(text: str, escape: Callable[[str], str]) -> str:
    """``text`` with ``escape`` applied to all but its code spans."""
    out: list[str] = []
    last = 0
    for match in _CODE_SPAN.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def _html(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def cell(text: str | None) -> str:
    """``text`` made safe for one Markdown table cell.

    Pipes and angle brackets are escaped outside code spans (Python-Markdown keeps a
    pipe inside a code span in its cell, and would show an escaping backslash there);
    paragraphs are kept apart by ``<br>``, other newlines become spaces."""
    if not text:
        return ""
    text = _PARAGRAPH_BREAK.sub("\x00", text.strip())
    joined = _outside_code(text, _escape_text)
    return " ".join(joined.split()).replace("\x00", "<br>")


def code(text: str) -> str:
    """``text`` as an inline code span, whatever backticks it holds."""
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; each row's cells must already be :func:`cell`-safe."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def anchor(*parts: str) -> str:
    """An id for a heading's ``{#id}`` (attr_list), from words of any kind."""
    words = re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-")
    return words or "section"


def literal(value: Any) -> str:
    """A default value as the reader would write it (JSON's spelling: ``true``, ``null``)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def paragraphs(text: str | None) -> str:
    """A help text or description as Markdown paragraphs (blank line after), or nothing."""
    if not text or not text.strip():
        return ""
    return _outside_code(text.strip(), _html) + "\n\n"
