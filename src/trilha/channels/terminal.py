"""Prints the bot's messages on the terminal, for ``trilha run`` and a local worker.

A message is built from what contacts and services sent, so it goes through a
:class:`~trilha.observability.terminal.SafeConsole`: its control characters print
escaped, never obeyed. A bot message may span lines; when many conversations share
the terminal (``show_conversation``) its newlines print as ``\\n`` instead, so one
conversation's text cannot forge a line of another's.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from trilha.core.execution import OutboundMessage
from trilha.observability.terminal import SafeConsole, field


class TerminalChannel:
    """Shows text only: buttons and lists arrive as numbered options (a reply by number
    picks one), media as its caption and link, a place as its address and a map link."""

    name = "terminal"
    renders: frozenset[str] = frozenset()
    window_seconds: float | None = None

    def __init__(self, console: Console | None = None, *, show_conversation: bool = False) -> None:
        self.console = console or SafeConsole(highlight=False, emoji=False)
        self.show_conversation = show_conversation

    async def deliver(self, message: OutboundMessage) -> None:
        if self.show_conversation:
            who = f"[dim]{field(message.conversation_id)}[/dim] "
            text = field(message.text)
        else:
            who, text = "", escape(message.text)
        speaker = "bot" if message.agent_id is None else f"agent {field(message.agent_id)}"
        self.console.print(f"{who}[bold cyan]{speaker}>[/bold cyan] {text}")

    async def aclose(self) -> None:
        return None
