"""Bursts: a contact's messages typed in quick succession, taken as one reply
(``settings.debounceMs``). Pure: no I/O.

Contacts type in bursts ("oi" / "queria marcar" / "uma consulta"); a question would take
the first line as its answer and the rest as answers to whatever it asks next. With a
window, the engine waits until the window has passed after the last message (durably:
the wait is the execution's ``wake_at``) and then takes the burst as one reply, the
texts joined with a newline.

Only typed texts join a burst: a button tapped, a photo or a place is a reply of its
own, taken alone and at once (it also closes the burst of texts before it). A burst is
at most :data:`MAX_BURST` messages, so a contact who never stops typing is still
answered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from trilha.core.execution import InboundMessage

__all__ = ["MAX_BURST", "Burst", "burst_of"]

#: the most messages taken as one reply
MAX_BURST: Final = 50


def _typed(message: InboundMessage) -> bool:
    return bool((message.content or {}).get("type", "text") == "text")


@dataclass(frozen=True, slots=True)
class Burst:
    """The messages to take as one reply, and when they may be taken."""

    messages: tuple[InboundMessage, ...]
    #: when the window after the last of them passes; ``None``: take them now (a reply
    #: that is not a text, a message after them closes the burst, or it is full)
    ready_at: float | None

    def merged(self) -> InboundMessage:
        """The reply the node reads: the last message (so its id is the one recorded as
        the step's input) with every text of the burst, in order, one per line, and the
        latest language any of them said."""
        last = self.messages[-1]
        if len(self.messages) == 1:
            return last
        text = "\n".join(m.text for m in self.messages)
        language = next(
            (
                m.content["language"]
                for m in reversed(self.messages)
                if m.content and m.content.get("language")
            ),
            None,
        )
        content = None if language is None else {"type": "text", "text": text, "language": language}
        return dataclasses.replace(last, text=text, content=content)


def burst_of(pending: Sequence[InboundMessage], window_seconds: float) -> Burst | None:
    """The burst at the head of ``pending`` (the execution's unapplied messages, oldest
    first), or ``None`` when there are none."""
    if not pending:
        return None
    if not _typed(pending[0]) or window_seconds <= 0:
        return Burst((pending[0],), None)
    taken: list[InboundMessage] = []
    for message in pending:
        if not _typed(message) or len(taken) == MAX_BURST:
            return Burst(tuple(taken), None)  # closed by what follows, or full
        taken.append(message)
    if len(taken) == MAX_BURST:
        return Burst(tuple(taken), None)
    return Burst(tuple(taken), taken[-1].received_at + window_seconds)
