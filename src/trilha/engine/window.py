"""When the contact last wrote, for a channel with a customer-service window.

Read from the store at most once per turn, and only when the channel has a window
and a node that speaks runs: a turn woken by the contact's own message knows the
window is open without asking (that message is at most as old as the newest one).
"""

from __future__ import annotations

from trilha.core.execution import Execution
from trilha.core.window import ServiceWindow
from trilha.engine.turn import _Turn
from trilha.store.base import Store


async def service_window(
    store: Store, ex: Execution, turn: _Turn, seconds: float, now: float
) -> ServiceWindow:
    """The window as this turn sees it: the newest of the contact's messages in the
    conversation (a trigger's message included), read once per turn."""
    known = turn.heard_at
    if known is not None and now - known < seconds:
        return ServiceWindow(seconds, known)
    if not turn.heard_read:
        stored = await store.last_inbound_at(ex.institution_id, ex.conversation_id)
        turn.heard_read = True
        if stored is not None and (known is None or stored > known):
            turn.heard_at = stored
    return ServiceWindow(seconds, turn.heard_at)
