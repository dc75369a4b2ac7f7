"""Delivers the outbox through a channel: at least once, in order per conversation.

A message is in the outbox only if its step committed, so nothing is sent for
a step that did not happen; it is marked sent after the channel accepted it,
so a crash in between re-sends it with the same idempotency key. A failed
delivery is retried with exponential backoff; after ``max_attempts`` it is
marked dead (kept, visible, never silently dropped).

Nothing about a delivery is silent: the execution's trail (and the process log)
tells ``message.delivered`` when the channel accepted a message, a WARN
``message.delivery_failed`` for every failed attempt (the status or error, the
attempt, the next try) and an ERROR ``message.dead`` when it is given up; the
lines are written in the same store write as the outcome they tell, so the trail
never says more or less than the outbox. Failures are counted in
``trilha_outbox_delivery_failures_total``.

A channel may say more of a failure in its ``kind`` (the WhatsApp channel does, from
Meta's error codes): ``permanent`` and ``outside_window`` make the message dead at once
(trying again sends the same refusal); ``throttled`` retries no sooner than the
channel's ``retry_after``; and a ``deferred`` one (the channel's own rate limit held it
back before any try) comes back after ``retry_after`` without counting an attempt.

With a desk (the ``handoff`` dependency), each round also announces new handoffs (with
the execution's variables and transcript so far) and then forwards the contact's
messages said while a person holds the conversation, each once (an idempotency key per
message), in the order the contact wrote them and only after the desk heard of the
handoff itself; a failed POST is retried with backoff, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any, Final

from trilha.channels.base import Channel
from trilha.channels.desk import HandoffDesk
from trilha.core.execution import Handoff, LogRecord, OutboundMessage, iso
from trilha.engine.clock import Clock, SystemClock
from trilha.errors import ChannelError, CorruptedRecord, ExecutionNotFound
from trilha.observability.logging import echo_trail
from trilha.observability.trail import level_rank
from trilha.store.base import Store

if TYPE_CHECKING:
    from trilha.observability.metrics import Metrics


#: the failures that trying again cannot mend: the message is dead at the first one
GIVE_UP: Final = frozenset({"permanent", "outside_window"})
#: the kinds a channel may give a failure, each a :func:`failure_reason` of its own
KINDS: Final = GIVE_UP | {"throttled"}


def failure_reason(exc: ChannelError) -> str:
    """A bounded label for why a delivery failed: the channel's ``kind`` when it gives
    one (``permanent``, ``outside_window``, ``throttled``), else the HTTP status class
    the channel answered, else a timeout or a connection that could not be made (as the
    channel says in ``reason``, or as its cause shows), or ``error``."""
    kind = exc.details.get("kind")
    if kind in KINDS:
        return str(kind)
    status = exc.details.get("status")
    if isinstance(status, int):
        return f"http_{status // 100}xx" if 100 <= status < 600 else "error"
    reason = exc.details.get("reason")
    if reason in ("timeout", "connection"):
        return str(reason)
    cause = exc.__cause__
    if isinstance(cause, TimeoutError):
        return "timeout"
    if isinstance(cause, OSError):  # ConnectionError is one
        return "connection"
    return "error"


def _retry_after(exc: ChannelError) -> float | None:
    """The channel's ``retry_after`` (seconds, at most a day), if it gave one."""
    value = exc.details.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return min(float(value), 86_400.0)
    return None


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channel: Channel,
        *,
        clock: Clock | None = None,
        dispatcher_id: str = "dispatcher",
        max_attempts: int = 10,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 300.0,
        lease_seconds: float = 30.0,
        batch_size: int = 256,
        desk: HandoffDesk | None = None,
        metrics: Metrics | None = None,
        store_level: str = "DEBUG",
    ) -> None:
        self.store = store
        self.channel = channel
        self.clock = clock or SystemClock()
        self.dispatcher_id = dispatcher_id
        self.max_attempts = max_attempts
        #: the pause after the first failed attempt; it doubles per attempt up to the cap
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        #: where handoffs are announced (the ``handoff`` dependency), if declared
        self.desk = desk
        self.metrics = metrics
        #: lines below this level are echoed to the process log but not stored
        #: (``logging.store_level``, as the engine does)
        self._store_floor = level_rank(store_level)

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many messages were handled."""
        messages = await self.store.claim_outbox(
            self.dispatcher_id,
            now=self.clock.now(),
            lease_seconds=self.lease_seconds,
            limit=self.batch_size,
        )
        by_conversation: dict[tuple[str, str], list[OutboundMessage]] = {}
        for message in messages:
            key = (message.institution_id, message.conversation_id)
            by_conversation.setdefault(key, []).append(message)
        sent: list[OutboundMessage] = []
        # conversations are independent: deliver them side by side, so one slow
        # webhook call does not hold every other contact's reply behind it
        await asyncio.gather(*(self._deliver(queue, sent) for queue in by_conversation.values()))
        if sent:
            now = self.clock.now()
            lines = [
                self._line(m, "INFO", "message.delivered", {"attempt": m.attempts + 1}, now)
                for m in sent
            ]
            await self.store.mark_sent(
                [m.id for m in sent if m.id is not None], now=now, logs=self._stored(lines)
            )
            for message, line in zip(sent, lines, strict=True):
                echo_trail([line], message)
        return len(messages) + await self._notify_handoffs()

    async def _deliver(self, queue: list[OutboundMessage], sent: list[OutboundMessage]) -> None:
        """One conversation's messages, in order; the first failure stops the rest
        (they are retried after it, keeping the order the contact reads them in)."""
        for i, message in enumerate(queue):
            assert message.id is not None
            try:
                await self.channel.deliver(message)
            except ChannelError as exc:
                await self._failed(message, exc)
                # the rest go back now, held by the claim behind the one that failed
                # (a deferral is due again in a moment), not by their lease's full term
                untried = [m.id for m in queue[i + 1 :] if m.id is not None]
                await self.store.release_outbox(self.dispatcher_id, untried)
                return
            sent.append(message)

    async def _failed(self, message: OutboundMessage, exc: ChannelError) -> None:
        """Record a failed attempt: retry later with backoff, or give the message up,
        and say which in the trail, the process log and the failure counter."""
        assert message.id is not None
        retry_after = _retry_after(exc)
        if exc.details.get("deferred") and retry_after is not None:
            await self._deferred(message, exc, retry_after)
            return
        now = self.clock.now()
        attempts = message.attempts + 1
        reason = failure_reason(exc)
        retry_at = None
        if attempts < self.max_attempts and reason not in GIVE_UP:
            backoff = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempts - 1))
            retry_at = now + max(backoff * (0.5 + random.random() / 2), retry_after or 0.0)
        status = exc.details.get("status")
        failure: dict[str, Any] = {
            "attempt": attempts,
            "maxAttempts": self.max_attempts,
            "status": status if isinstance(status, int) else None,
            # the wire's {type, message, stack}: what failed underneath (ConnectError,
            # ReadTimeout...), else the channel's own refusal
            "error": {"type": type(exc.__cause__ or exc).__name__, "message": str(exc)},
            "reason": reason,
            "nextAttemptAt": iso(retry_at),
            "retryInSeconds": None if retry_at is None else round(retry_at - now, 3),
        }
        code = exc.details.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            failure["code"] = code  # the platform's own error code (Meta's 131026...)
        lines = [self._line(message, "WARN", "message.delivery_failed", failure, now)]
        if retry_at is None:
            kept = ("status", "error", "reason", "code")
            given_up: dict[str, Any] = {k: failure[k] for k in kept if k in failure}
            lines.append(
                self._line(
                    message, "ERROR", "message.dead", {"attempts": attempts, **given_up}, now
                )
            )
        await self.store.mark_failed(
            message.id, error=str(exc), retry_at=retry_at, now=now, logs=self._stored(lines)
        )
        echo_trail(lines, message)
        if self.metrics is not None:
            self.metrics.delivery_failed(message.institution_id, reason)

    async def _deferred(
        self, message: OutboundMessage, exc: ChannelError, retry_after: float
    ) -> None:
        """The channel held the message back before trying it (its own rate limit):
        due again after ``retry_after``, no attempt counted, no failure either."""
        assert message.id is not None
        now = self.clock.now()
        retry_at = now + retry_after
        context = {
            "reason": failure_reason(exc),
            "nextAttemptAt": iso(retry_at),
            "retryInSeconds": round(retry_after, 3),
        }
        line = self._line(message, "DEBUG", "message.deferred", context, now)
        await self.store.mark_failed(
            message.id,
            error=str(exc),
            retry_at=retry_at,
            now=now,
            logs=self._stored([line]),
            attempted=False,
        )
        echo_trail([line], message)

    def _stored(self, lines: list[LogRecord]) -> list[LogRecord]:
        return [r for r in lines if level_rank(r.level) >= self._store_floor]

    @staticmethod
    def _line(
        message: OutboundMessage, level: str, event: str, context: dict[str, Any], now: float
    ) -> LogRecord:
        """A trail line about ``message``: which one (its idempotency key, the one the
        channel receives) and the step that sent it."""
        return LogRecord(
            message.execution_id,
            level,
            event,
            now,
            None,
            None,
            {"idempotencyKey": message.idempotency_key, "stepSeq": message.step_seq, **context},
        )

    async def _notify_handoffs(self) -> int:
        if self.desk is None:
            return 0
        notices = await self.store.claim_handoff_notices(
            now=self.clock.now(), lease_seconds=self.lease_seconds, limit=self.batch_size
        )
        for handoff_id, handoff in notices:
            variables = await self._variables(handoff)
            transcript = await self.store.transcript(handoff.execution_id)
            try:
                await self.desk.notify(
                    handoff_id, handoff, variables=variables, transcript=transcript
                )
            except ChannelError as exc:
                await self.store.mark_handoff_notice(
                    handoff_id,
                    now=self.clock.now(),
                    error=str(exc),
                    retry_at=self.clock.now() + 5.0 * (0.5 + random.random()),
                )
                continue
            await self.store.mark_handoff_notice(
                handoff_id, now=self.clock.now(), error=None, retry_at=None
            )
        return len(notices) + await self._forward_held()

    async def _variables(self, handoff: Handoff) -> dict[str, Any] | None:
        """The execution's variables now, for the desk (``None`` if its row is unreadable
        or gone: the notice goes out without them rather than not at all)."""
        try:
            execution = await self.store.get_execution(handoff.execution_id)
        except (CorruptedRecord, ExecutionNotFound):
            return None
        return execution.variables

    async def _forward_held(self, rounds: int = 20) -> int:
        """Forward the contact's messages held for a person: each execution's oldest one
        per claim (the order the desk reads them in), again while some went out."""
        assert self.desk is not None
        handled = 0
        for _ in range(rounds):
            claimed = await self.store.claim_desk_messages(
                now=self.clock.now(), lease_seconds=self.lease_seconds, limit=self.batch_size
            )
            sent = 0
            for held in claimed:
                try:
                    await self.desk.forward(held.message)
                except ChannelError as exc:
                    now = self.clock.now()
                    backoff = min(self.max_backoff_seconds, 5.0 * 2**held.attempts)
                    await self.store.mark_desk_message(
                        held.id,
                        now=now,
                        error=str(exc),
                        retry_at=now + backoff * (0.5 + random.random()),
                    )
                    continue
                await self.store.mark_desk_message(
                    held.id, now=self.clock.now(), error=None, retry_at=None
                )
                sent += 1
            handled += len(claimed)
            if not sent:
                break
        return handled
