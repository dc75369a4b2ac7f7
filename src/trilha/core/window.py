"""The customer-service window: how long after the contact's last message a business
may write freely. Pure: no I/O.

WhatsApp gives 24 hours from each message the contact sends; after that only a template
Meta approved may be sent (:mod:`trilha.core.template_messages`). A channel declares its
window (``window_seconds``; ``None``: it has none, anything may be sent any time); the
engine reads when the contact last wrote in the conversation once per turn, and only
for a channel with a window, and hands the processors a :class:`ServiceWindow`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServiceWindow"]


@dataclass(frozen=True, slots=True)
class ServiceWindow:
    """A channel's window and when the contact last wrote (``None``: never, in this
    conversation)."""

    seconds: float
    last_heard_at: float | None

    def open_at(self, now: float) -> bool:
        """Whether a free-form message may be sent at ``now``."""
        return self.last_heard_at is not None and now - self.last_heard_at < self.seconds

    def why_closed(self, now: float) -> str:
        """Why the window is closed at ``now``, for the trail and the node's error."""
        hours = self.seconds / 3600
        if self.last_heard_at is None:
            return f"the contact has not written in this conversation ({hours:g} h window)"
        ago = (now - self.last_heard_at) / 3600
        return f"the contact last wrote {ago:.1f} h ago, outside the {hours:g} h window"
