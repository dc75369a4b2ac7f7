"""Terminal-safe text: stored text is shown escaped, never obeyed (finding 15)."""

from __future__ import annotations

import io
import json

import pytest
from rich.control import Control
from rich.table import Table
from rich.text import Text

from trilha.observability.terminal import SafeConsole, field, json_text, visible

#: one of each kind a terminal obeys or that disguises text
CONTROLS = (
    "\x00\x07\x08\t\r\x1b\x7f\x80\x9b\x9f\u061c\u200e\u200f\u2028\u2029\u202a\u202e\u2066\u2069"
)


def console(*, terminal: bool = False) -> tuple[SafeConsole, io.StringIO]:
    """A console like the CLI's, writing to a string."""
    file = io.StringIO()
    made = SafeConsole(
        file=file,
        width=60,
        color_system=None,
        force_terminal=terminal,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )
    return made, file


def raw(text: str) -> list[str]:
    """The characters of ``text`` a terminal could obey (newlines are layout)."""
    return [c for c in text if c in CONTROLS or (ord(c) < 0x20 and c != "\n")]


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x9b31m", "\\x9b31m"),
        ("a\u202eb\u2066c", "a\\u202eb\\u2066c"),
        ("one\ntwo\r\tthree", "one\\ntwo\\r\\tthree"),
        ("\x7f\x00\ud800", "\\x7f\\x00\\ud800"),
        ("Olá, 世界 👋 \u200d ok", "Olá, 世界 👋 \u200d ok"),
    ],
)
def test_visible_escapes_controls_and_keeps_other_text(stored: str, shown: str) -> None:
    """C0, DEL, C1, bidi controls, separators and lone surrogates become visible escapes."""
    assert visible(stored) == shown


def test_visible_can_keep_the_callers_own_line_breaks() -> None:
    """With keep_newlines a newline stays a line break; every other control is escaped."""
    assert visible("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert not raw(visible(CONTROLS))


def test_field_makes_markup_literal_and_keeps_one_line() -> None:
    """A field's markup and newlines print as they are stored, on one line."""
    stored = "[red]x[/red] \\[b] [link=http://e.test]y[/link]\nz\x1b[2J"
    out, file = console()
    out.print(f"name: {field(stored)}")
    assert file.getvalue() == "name: " + visible(stored) + "\n"
    assert file.getvalue() == "name: [red]x[/red] \\[b] [link=http://e.test]y[/link]\\nz\\x1b[2J\n"


def test_safe_console_escapes_every_renderable() -> None:
    """Markup strings, Text objects, tables and JSON print no raw control character."""
    out, file = console()
    out.print(f"[bold]{CONTROLS}[/bold]")
    out.print(CONTROLS, markup=False)
    out.print(Text.assemble(("styled", "red"), CONTROLS))
    table = Table("who", "said")
    table.add_row("contact", "hi\x1b[2J")
    table.add_row("bot", "hello there")
    out.print(table)
    out.print_json(data={"text": CONTROLS})
    printed = file.getvalue()
    assert not raw(printed), raw(printed)
    assert printed.count("\\x1b") == 4  # three prints and the table's cell (JSON: \\u001b)
    widths = {len(line) for line in printed.splitlines() if line.startswith(("│", "┃", "┏", "└"))}
    assert len(widths) == 1  # measured after escaping: the table's columns still line up


def test_safe_console_leaves_rich_own_controls_alone() -> None:
    """Rich's control segments (cursor moves, a bell) are not text and pass unchanged."""
    out, file = console(terminal=True)
    out.print(Control.bell(), end="")
    assert file.getvalue() == "\x07"


def test_json_text_is_exact_json_without_raw_controls() -> None:
    """JSON for a terminal: DEL, C1, bidi and surrogates \\u-escaped, accents kept, exact."""
    data = {"text": f"Olá {CONTROLS}", "n": [1, None]}
    encoded = json_text(data, indent=2)
    assert not raw(encoded)
    assert "Olá" in encoded and "\\u009b" in encoded and "\\u202e" in encoded
    assert json.loads(encoded) == data


def test_json_log_lines_escape_what_a_terminal_would_obey() -> None:
    """A process log line in JSON carries a contact's C1 and bidi characters escaped
    (orjson escapes only C0), and still decodes to the same text."""
    from trilha.observability.logging import render_json

    text = "Eve\x1b[2J\u202e evil \x9b31m ção"
    line = render_json({"message": text})
    assert "\u202e" not in line and "\x9b" not in line and "\x1b" not in line
    assert "ção" in line
    assert json.loads(line)["message"] == text
