"""The engine's side of a contact's silence: waking for reminders, and ending a session
the contact left (``settings.sessionTimeoutSeconds``, outcome ``expired``).

Mixed into :class:`~trilha.engine.engine.Engine` like :mod:`trilha.engine.recovery`;
the times themselves are pure (:mod:`trilha.core.silence`). Every wait the engine
commits wakes at the earliest of its due time, its next reminder and its session's
expiry, so a restart finds each of them in the row. At the expiry the store is asked
when the contact last wrote (a message sent during a delay is stored, not applied)
or a person handed the conversation back; if that was recent the session goes on and
the execution sleeps again, else it ends, wherever it waited. A ``paused`` execution
never expires: a person holds it, and resuming it starts its silence over.
"""

from __future__ import annotations

from trilha.core.content import spoken
from trilha.core.execution import Execution, iso
from trilha.core.silence import (
    EXPIRING,
    heard_at,
    next_wake,
    session_meta,
    wait_due,
)
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.parts import EngineParts
from trilha.engine.turn import _Turn
from trilha.errors import FlowNotFound
from trilha.processors.base import End

S = ExecutionStatus


class Silence(EngineParts):
    """Reminders' wakes and the session's expiry, for :class:`~trilha.engine.engine.Engine`."""

    def _wake_early(self, ex: Execution) -> None:
        """Wake the waiting ``ex`` at the earliest of its wait's due time, its next
        reminder and its session's expiry (recorded here, from its flow's setting)."""
        flow = self._flows.get((ex.flow_id, ex.flow_version))
        if flow is not None:  # the flow ran this turn; else the row's expiry stands
            ex.meta = session_meta(ex.meta, heard_at(ex), flow.settings.session_timeout_seconds)
        ex.wake_at = next_wake(ex)

    async def _expire_if_silent(self, ex: Execution, turn: _Turn) -> bool:
        """Woken in a wait with no reply to apply: end ``ex`` as ``expired`` when its
        contact has been silent for the flow's ``sessionTimeoutSeconds``, or send it back
        to sleep when only the expiry woke it and the contact spoke since. True when the
        turn is over (committed)."""
        if ex.status not in EXPIRING or turn.inbound is not None:
            return False
        try:
            flow = await self.flow(ex.flow_id, ex.flow_version)
        except FlowNotFound:
            return False  # the step loop ends it, saying why
        limit = flow.settings.session_timeout_seconds
        now = self.clock.now()
        if limit is None or now < heard_at(ex) + limit:
            return False
        latest = await self.store.last_heard_at(ex.id)
        heard = max(heard_at(ex), latest or 0.0)
        if now < heard + limit:  # they wrote, or were handed back: the session goes on
            ex.meta = session_meta(ex.meta, heard, limit)
            self._log(
                turn,
                "INFO",
                "session.extended",
                None,
                {"lastHeardAt": iso(heard), "expiresAt": iso(heard + limit)},
            )
            if wait_due(ex, now):
                return False
            self._wake_early(ex)
            await self._commit(turn)
            return True
        silent = now - heard
        self._log(
            turn,
            "INFO",
            "session.expired",
            None,
            {
                "sessionTimeoutSeconds": limit,
                "silentSeconds": round(silent, 3),
                "lastHeardAt": iso(heard),
                "waiting": ex.status.value,
            },
        )
        message = flow.settings.expiry_message
        self._end(
            turn,
            End(
                S.TIMEOUT,
                Outcome.EXPIRED,
                f"the contact was silent for {silent:.0f}s"
                f" (settings.sessionTimeoutSeconds is {limit:g})",
            ),
            None if message is None else spoken(message, ex.variables, flow.default_language),
        )
        await self._commit(turn)
        return True
