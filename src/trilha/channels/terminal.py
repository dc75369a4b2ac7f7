"""Prints the bot's messages on the terminal, for ``trilha run`` and a local worker."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from trilha.core.execution import OutboundMessage


class TerminalChannel:
    name = "terminal"

    def __init__(self, console: Console | None = None, *, show_conversation: bool = False) -> None:
        self.console = console or Console(highlight=False)
        self.show_conversation = show_conversation

    async def deliver(self, message: OutboundMessage) -> None:
        who = f"[dim]{escape(message.conversation_id)}[/dim] " if self.show_conversation else ""
        self.console.print(f"{who}[bold cyan]bot>[/bold cyan] {escape(message.text)}")

    async def aclose(self) -> None:
        return None
