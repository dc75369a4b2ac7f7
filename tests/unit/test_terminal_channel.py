"""The terminal channel prints a bot message's control characters escaped (issue 14,
finding 15): the message carries what contacts and services sent."""

from __future__ import annotations

import io

from trilha.channels.terminal import TerminalChannel
from trilha.core.execution import OutboundMessage
from trilha.observability.terminal import SafeConsole

HOSTILE = "hi \x1b]52;c;cGF5bG9hZA==\x07\x1b[2J\x9b31m [red]x[/red]\nserver> fake line"


def _message(conversation: str = "c1") -> OutboundMessage:
    return OutboundMessage(
        idempotency_key="e:1:0",
        execution_id="e",
        institution_id="i",
        conversation_id=conversation,
        contact_id="k",
        channel="terminal",
        text=HOSTILE,
        created_at=0.0,
        step_seq=1,
    )


async def _printed(channel_of: type[TerminalChannel], **options: bool) -> str:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=False, width=300)
    await channel_of(console, **options).deliver(_message())
    return buffer.getvalue()


async def test_a_single_conversation_keeps_lines_but_no_controls() -> None:
    """Escapes and markup print as text; the message's own newline stays a line."""
    text = await _printed(TerminalChannel)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\\x1b]52;c;" in text and "\\x9b31m" in text and "[red]x[/red]" in text
    assert text.count("\n") == 2


async def test_many_conversations_print_one_line_each() -> None:
    """With conversations side by side a newline prints as \\n: no forged line."""
    text = await _printed(TerminalChannel, show_conversation=True)
    assert text.count("\n") == 1
    assert "\\nserver> fake line" in text


def test_the_default_console_is_safe() -> None:
    """A channel made without a console (trilha worker's) prints through a SafeConsole."""
    assert isinstance(TerminalChannel().console, SafeConsole)
