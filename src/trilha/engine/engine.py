"""The step loop: the only place where the pure core meets the store.

A worker claims an execution (a lease with a fencing token), runs its nodes
one at a time through their processors and commits what they decided. Pure
nodes (``set``, ``condition``, ``message``...) have no outside effect until
commit, so a run of them shares one transaction, each still with its own
checkpoint row; before an effectful node (``http``) the pending steps are
committed so a crash re-runs only the effect. Nothing is held in memory while
an execution waits: the wait is a ``wake_at`` in its row.

The failure paths (retries, fallbacks, escalation, restoring a corrupted row)
are in :mod:`trilha.engine.recovery`, mixed into :class:`Engine`; the turn being
accumulated is :class:`trilha.engine.turn._Turn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Awaitable
from typing import Any, TypeVar

from trilha.config import Config
from trilha.core.budget import check_value, json_bytes
from trilha.core.content import CAPABILITIES, ContentFields, contact_language, spoken
from trilha.core.execution import (
    Checkpoint,
    Execution,
    Handoff,
    InboundMessage,
    LogRecord,
    OutboundMessage,
    Transition,
    TurnRecord,
    checksum,
    iso,
)
from trilha.core.flow import (
    Flow,
    NodeBase,
    QuestionNode,
    SubflowNode,
    WaitEventNode,
    load_flow,
)
from trilha.core.frames import RETURNING, pop, push
from trilha.core.hold import held
from trilha.core.signals import event_wait, waited_event
from trilha.core.silence import heard, reminder_due
from trilha.core.states import ExecutionStatus, Outcome, check_transition
from trilha.core.tenancy import check_entry, flow_candidates
from trilha.core.triggers import TriggerMatch
from trilha.engine.calendars import turn_calendars
from trilha.engine.clock import Clock, SystemClock
from trilha.engine.hold import HumanHold
from trilha.engine.recovery import ESCALATION_MESSAGE, FAILURE_MESSAGE, Recovery, recovered
from trilha.engine.silence import Silence
from trilha.engine.triggered import (
    MERGED,
    TRIGGER_META,
    gather_burst,
    interruption,
    replaced_reason,
    trigger_meta,
    triggered_line,
)
from trilha.engine.turn import (
    _Turn,
    describe_error,
    new_id,
    new_worker_id,
    set_path,
    with_path,
)
from trilha.engine.window import service_window
from trilha.errors import (
    AccessDenied,
    CorruptedRecord,
    FlowNotFound,
    LimitExceeded,
    NodeTimeout,
    StaleLease,
    StoreError,
)
from trilha.observability import tracing
from trilha.observability.logging import echo_trail, get_logger
from trilha.observability.metrics import Metrics, error_kind
from trilha.observability.trail import level_rank
from trilha.processors.base import (
    Call,
    End,
    HandoffRequest,
    StepContext,
    StepResult,
    WaitEvent,
    WaitHuman,
    WaitInput,
    WaitRecovery,
    WaitTimer,
)
from trilha.processors.registry import Processors
from trilha.resilience.breaker import BreakerRegistry
from trilha.resilience.dependencies import begin_call, call_ended
from trilha.store.base import Claimed, InboundResult, StepCommit, Store

# re-exported: callers and tests import these from here
__all__ = [
    "ESCALATION_MESSAGE",
    "FAILURE_MESSAGE",
    "Engine",
    "_Turn",
    "describe_error",
    "new_id",
    "new_worker_id",
    "set_path",
]

S = ExecutionStatus
T = TypeVar("T")
log = get_logger("trilha.engine")

#: the ``meta`` key holding the step that last consumed a reply from the contact (or a
#: signal: input from outside all the same, so a loop waiting for signals is no runaway)
LAST_INPUT_SEQ = "lastInputSeq"


def _outbound(
    ex: Execution,
    seq: int,
    index: str,
    text: str,
    now: float,
    content: dict[str, Any] | None = None,
    reply_to: str | None = None,
) -> OutboundMessage:
    """A message of step ``seq``; its key ``execution:seq:index`` is what makes delivery
    at most once per step. ``reply_to``: the contact's message it answers."""
    return OutboundMessage(
        idempotency_key=f"{ex.id}:{seq}:{index}",
        execution_id=ex.id,
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        contact_id=ex.contact_id,
        channel=ex.channel,
        text=text,
        created_at=now,
        step_seq=seq,
        content=content,
        reply_to=reply_to,
    )


def sys_context(
    ex: Execution, flow: Flow, now: float, calendars: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a flow reads under ``sys``: who and where it runs, the contact's language
    (``contact.language``, else the flow's default), the step's time, the message that
    started it when a trigger did (``trigger``: ``text``, ``type``, ``messageId``,
    ``keyword``; else null) and, for a flow that names one, the institution's calendars.
    Computed for each step and never stored, so it cannot be stale or written
    (publishing refuses a write under ``sys``)."""
    context = {
        "executionId": ex.id,
        "institutionId": ex.institution_id,
        "conversationId": ex.conversation_id,
        "contactId": ex.contact_id,
        "flowId": ex.flow_id,
        "flowVersion": ex.flow_version,
        "channel": ex.channel,
        "language": contact_language(ex.variables, flow.default_language),
        "now": iso(now),
        "trigger": ex.meta.get(TRIGGER_META),
    }
    if calendars is not None:
        context["calendars"] = calendars
    return context


def _hear_language(ex: Execution, inbound: InboundMessage) -> None:
    """A reply that says its language (the platform knows the contact's) sets
    ``contact.language`` before the node reads it, so the next texts speak it."""
    language = (inbound.content or {}).get("language")
    contact = ex.variables.get("contact")
    if (
        isinstance(language, str)
        and language
        and (not isinstance(contact, dict) or contact.get("language") != language)
    ):
        set_path(ex.variables, "contact.language", language)


class Engine(Recovery, Silence, HumanHold):
    """Starts executions, feeds them input, and advances claimed ones."""

    def __init__(
        self,
        store: Store,
        *,
        processors: Processors | None = None,
        config: Config | None = None,
        clock: Clock | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        renders: frozenset[str] = CAPABILITIES,
        window_seconds: float | None = None,
    ) -> None:
        self.store = store
        #: what the channel shows besides text; the rest is degraded when said
        self.renders = renders
        #: the channel's customer-service window (WhatsApp's 24 hours); ``None``: none,
        #: and no node's step reads when the contact last wrote
        self.window_seconds = window_seconds
        self.processors = processors or Processors.from_entry_points()
        self.config = config or Config()
        self.clock = clock or SystemClock()
        self.worker_id = worker_id or new_worker_id()
        #: jitter for retry backoff; injected so a test can replay a schedule
        self.rng = rng or random.Random()
        self._flows: dict[tuple[str, int], Flow] = {}
        self.breakers = BreakerRegistry(self.clock)
        #: Prometheus metrics; None records nothing
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_breakers(self.breakers.all)
        #: trail lines below this rank are echoed to the process log but not stored
        #: (``logging.store_level``; 0 keeps every line, node entry and exit included)
        self._store_floor = level_rank(self.config.logging.store_level)

    # flows --------------------------------------------------------------------------------

    async def publish(self, flow: Flow, wire: dict[str, Any] | None = None) -> int:
        """Store ``flow`` (``wire``: its wire form, when the caller made it already): an
        unchanged definition keeps its version, a changed one is the next."""
        return await self.store.publish_flow(flow.id, wire or flow.wire(), self.clock.now())

    async def flow(self, flow_id: str, version: int | None = None) -> Flow:
        if version is not None and (flow_id, version) in self._flows:
            return self._flows[(flow_id, version)]
        stored = await self.store.get_flow(flow_id, version)
        if stored is None:
            what = f"version {version} of flow" if version else "flow"
            raise FlowNotFound(f"no {what} '{flow_id}' in the store")
        cached = self._flows.get((flow_id, stored.version))
        if cached is not None:
            return cached
        # a large flow takes a hundred milliseconds to check: off the loop other
        # executions (and, in trilha serve, every request) run on
        flow = await asyncio.to_thread(load_flow, stored.definition, self.processors.node_types)
        self._flows[(flow_id, stored.version)] = flow
        return flow

    async def entered_flow(
        self, institution_id: str, reference: str, version: int | None = None
    ) -> Flow:
        """The flow ``reference`` (a jump's, a fallback flow's) means for an execution of
        ``institution_id``: its own flow of that name, else the shared one; another
        owner's flow raises :class:`AccessDenied` and is never read (DESIGN §9)."""
        candidates = flow_candidates(institution_id, reference)
        for stored in candidates[:-1]:
            with contextlib.suppress(FlowNotFound):
                return await self.flow(stored, version)
        return await self.flow(candidates[-1], version)

    # starting and feeding -------------------------------------------------------------------

    async def start(
        self,
        flow_id: str,
        *,
        institution_id: str,
        conversation_id: str,
        contact_id: str,
        variables: dict[str, Any] | None = None,
        version: int | None = None,
        channel: str = "default",
        replace: bool = False,
        actor: str = "api",
        start_key: str | None = None,
        execution_id: str | None = None,
    ) -> Execution:
        """Create an execution, ready to be claimed now.

        ``start_key`` names the request that started it (kept in its ``meta``): a
        retry of that request whose first answer was lost finds this execution
        instead of a busy conversation (see ``POST /v1/executions``). ``execution_id``
        is for callers that must name it (a simulation replayed from its seed)."""
        execution, transition, log = await self._new_execution(
            flow_id,
            version,
            institution_id=institution_id,
            conversation_id=conversation_id,
            contact_id=contact_id,
            variables=variables,
            channel=channel,
            actor=actor,
            meta={} if start_key is None else {"startKey": start_key},
            execution_id=execution_id,
        )
        created = await self.store.create_execution(execution, transition, [log], replace=replace)
        echo_trail([log], created)
        return created

    async def start_triggered(
        self,
        flow_id: str,
        message: InboundMessage,
        match: TriggerMatch,
        *,
        variables: dict[str, Any] | None = None,
        replacing: Execution | None = None,
        actor: str = "api",
    ) -> tuple[Execution | None, InboundResult]:
        """Start ``flow_id`` for the contact's ``message`` that ``match``ed a trigger, the
        message kept as the execution's ``sys.trigger`` (never a reply to its first
        question), in one transaction (:meth:`Store.create_triggered`); ``replacing``: the
        conversation's running execution, which an interrupting trigger cancels. A message
        stored already starts nothing: ``(None, its duplicate)``."""
        execution, transition, log = await self._new_execution(
            flow_id,
            None,
            institution_id=message.institution_id,
            conversation_id=message.conversation_id,
            contact_id=message.contact_id,
            variables=variables,
            channel="default",
            actor=actor,
            meta={TRIGGER_META: trigger_meta(message, match)},
        )
        logs = [log, triggered_line(execution, message, match, replacing)]
        reason = None if replacing is None else replaced_reason(execution, match)
        result = await self.store.create_triggered(
            execution, transition, logs, message, replace_reason=reason
        )
        if result.status == "duplicate":
            return None, result
        echo_trail(logs, execution)
        return execution, result

    async def _new_execution(
        self,
        flow_id: str,
        version: int | None,
        *,
        institution_id: str,
        conversation_id: str,
        contact_id: str,
        variables: dict[str, Any] | None,
        channel: str,
        actor: str,
        meta: dict[str, Any],
        execution_id: str | None = None,
    ) -> tuple[Execution, Transition, LogRecord]:
        """A new execution of ``flow_id`` due now, with its birth transition and trail line."""
        flow = await self.flow(flow_id, version)
        check_entry(institution_id, flow.id)
        now = self.clock.now()
        start_vars = dict(variables or {})
        if tracing.active and (traceparent := tracing.current_traceparent()) is not None:
            meta = {**meta, tracing.TRACE_META: traceparent}
        execution = Execution(
            id=execution_id or new_id(),
            institution_id=institution_id,
            conversation_id=conversation_id,
            contact_id=contact_id,
            flow_id=flow.id,
            flow_version=flow.version,
            status=S.RUNNING,
            current_node_id=flow.start,
            variables=dict(start_vars),
            created_at=now,
            updated_at=now,
            wake_at=now,
            channel=channel,
            start_variables=start_vars,
            turn_started_at=now,
            meta=meta,
        )
        transition = Transition(execution.id, None, S.RUNNING, "started", now, actor, flow.start)
        log = LogRecord(
            execution.id,
            "INFO",
            "execution.started",
            now,
            flow.start,
            None,
            {
                "flowId": flow.id,
                "flowVersion": flow.version,
                "institutionId": institution_id,
                "conversationId": conversation_id,
                "contactId": contact_id,
                "actor": actor,
            },
        )
        return execution, transition, log

    async def send(
        self,
        execution_id: str,
        text: str,
        *,
        message_id: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> Any:
        """Deliver a contact's reply to a stored execution (durably, then wake it).

        ``content`` is the reply structured (:meth:`trilha.inbound.InboundContent.content`),
        ``text`` its plain rendering. The reply is kept even when the execution's row is
        corrupted: the store takes the conversation from the row's identity columns, and
        the engine restores the execution when it next claims it."""
        try:
            execution: Execution | None = await self.store.get_execution(execution_id)
        except CorruptedRecord:
            execution = None
        return await self.store.deliver_inbound(
            institution_id=execution.institution_id if execution else None,
            conversation_id=execution.conversation_id if execution else "",
            message_id=message_id or new_id(),
            contact_id=execution.contact_id if execution else "",
            text=text,
            payload=None,
            now=self.clock.now(),
            execution_id=execution_id,
            content=content,
        )

    # the step loop --------------------------------------------------------------------------

    async def claim(
        self, *, limit: int | None = None, execution_id: str | None = None
    ) -> list[Claimed]:
        """Lease what is due now (at most ``limit``, default the batch size)."""
        return await self.store.claim_due(
            self.worker_id,
            now=self.clock.now(),
            lease_seconds=self.config.engine.lease_seconds,
            limit=limit or self.config.engine.batch_size,
            execution_id=execution_id,
        )

    async def run_once(self, *, limit: int | None = None, execution_id: str | None = None) -> int:
        """Claim what is due and advance it; returns how many executions were claimed."""
        claims = await self.claim(limit=limit, execution_id=execution_id)
        if claims:
            await asyncio.gather(*(self.advance(c) for c in claims))
        return len(claims)

    async def advance(self, claimed: Claimed) -> None:
        """Run one claimed execution until it waits, ends, or loses its lease."""
        ex = claimed.execution
        if self.metrics is not None and ex.wake_at is not None:
            self.metrics.waited(self.clock.now() - ex.wake_at)
        turn = _Turn(StepCommit(ex, self.worker_id, ex.fencing_token), claimed.inbound, None)
        if claimed.inbound is not None:
            turn.heard_at = claimed.inbound.received_at
        if ex.step_seq == 0 and isinstance(ex.meta.get(TRIGGER_META), dict):
            # the first turn of a triggered start answers the message that started it
            turn.reply_to = ex.meta[TRIGGER_META].get("messageId")
        if claimed.taken_from is not None:
            # a worker died (or lost the store) mid-turn: the turn runs again from the
            # last commit, and the trail says by whom and from whom
            self._log(
                turn,
                "WARN",
                "execution.taken_over",
                None,
                {"previousOwner": claimed.taken_from, "workerId": self.worker_id},
            )
        # the turn's span (tracing.active: the one check when tracing is off)
        traced = tracing.begin_turn(ex) if tracing.active else None
        failure: str | None = None
        try:
            if claimed.corruption is not None:
                await self._restore(ex, turn, claimed.corruption)
            else:
                await self._advance(ex, turn)
        except StaleLease as exc:
            failure = "lease_lost"
            # another worker (or an operator) took it: it resumes from the last checkpoint.
            # Said, so a late step the fence refused is visible, not silently dropped
            log.warning(
                "execution.lease_lost",
                executionId=ex.id,
                institutionId=ex.institution_id,
                workerId=self.worker_id,
                fencingToken=ex.fencing_token,
                error=exc,
            )
            return
        except StoreError:
            failure = "store"
            raise  # the worker loop backs off and retries; the lease protects the row
        except Exception as exc:  # a bug must not wedge the execution or kill the worker
            failure = "internal"
            await self._fail_internal(ex.id, ex.fencing_token, exc)
        except BaseException:
            failure = "cancelled"
            raise
        finally:
            if traced is not None:
                tracing.end_turn(traced, ex, failure)

    async def _advance(self, ex: Execution, turn: _Turn) -> None:
        now = self.clock.now()
        if await self._expire_if_silent(ex, turn):
            return
        if ex.status is S.WAITING_INPUT and waited_event(ex.waiting_for) is not None:
            if not await self._event_arrived(ex, turn):
                return
        elif ex.status is S.WAITING_INPUT:
            if turn.inbound is not None and await gather_burst(self, ex, turn):
                return  # the contact may still be typing: due again after the window
            if turn.inbound is not None:
                turn.resumed_by = "input"
                self._move(turn, S.RUNNING, "input received")
                ex.turn_started_at = now
                ex.meta = heard(ex.meta, turn.inbound.received_at)
            elif ex.due_at is not None and now >= ex.due_at:
                await self._input_timeout(ex, turn)
                await self._commit(turn)
                return
            elif reminder_due(ex, now):
                turn.resumed_by = "reminder"
                self._move(turn, S.RUNNING, f"a reminder is due at '{ex.current_node_id}'")
                ex.turn_started_at = now
            else:  # woken with nothing to do (a stale wake): go back to sleep
                self._wake_early(ex)
                await self._commit(turn)
                return
        elif ex.status is S.WAITING_DELAY:
            turn.resumed_by = "timer"
            self._move(turn, S.RUNNING, "timer fired")
            ex.turn_started_at = now
        elif ex.status is S.RECOVERING:
            turn.resumed_by = ex.waiting_for
            what = "probing the dependency" if ex.waiting_for == "dependency" else "retrying"
            self._move(
                turn, S.RUNNING, f"{what}: node '{ex.current_node_id}' attempt {ex.attempts + 1}"
            )
            ex.waiting_for = ex.due_at = None
        elif ex.status.terminal or ex.status is S.PAUSED:
            if held(ex) and ex.due_at is not None and now >= ex.due_at:
                await self._return_to_bot(ex, turn)
                await self._commit(turn)
                return
            # a person's hold sleeps until its return deadline; anything else, for good
            ex.wake_at = ex.due_at if held(ex) else None
            await self._commit(turn)
            return
        if ex.turn_started_at is None:
            ex.turn_started_at = now
        try:
            flow = await self.flow(ex.flow_id, ex.flow_version)
        except FlowNotFound as exc:
            self._end(turn, End(S.FAILED, Outcome.FAILED, str(exc)), FAILURE_MESSAGE)
            await self._commit(turn)
            return
        await self._run_nodes(ex, flow, turn)
        await self._commit(turn)

    async def _event_arrived(self, ex: Execution, turn: _Turn) -> bool:
        """An execution waiting for an event was woken: True when a signal of it is
        pending (the execution runs, and its ``wait_event`` node takes the signal); else
        the wait timed out or the wake was stale, and the turn is committed here. The
        contact's replies stay in the inbox meanwhile, for the next question."""
        event = waited_event(ex.waiting_for) or ""
        turn.inbound = None
        turn.signal = await self.store.pending_signal(ex.id, event)
        now = self.clock.now()
        if turn.signal is not None:
            turn.resumed_by = "signal"
            self._move(turn, S.RUNNING, f"signal '{event}' received")
            ex.turn_started_at = now
            ex.waiting_for = ex.due_at = None
            return True
        if ex.due_at is not None and now >= ex.due_at:
            await self._input_timeout(ex, turn)
        else:  # woken with nothing to do (a stale wake): go back to sleep
            ex.wake_at = ex.due_at
        await self._commit(turn)
        return False

    async def _run_nodes(self, ex: Execution, flow: Flow, turn: _Turn) -> None:
        limit = self.config.engine.max_steps_per_turn
        prev: NodeBase | None = None
        while True:
            deadline = self._deadline(ex, flow)
            if deadline is not None and self.clock.now() >= deadline:
                self._turn_timeout(ex, flow, turn, ex.current_node_id)
                return
            node = flow.node(ex.current_node_id) if ex.current_node_id else None
            if node is None:
                result = self._missing_node(ex, flow, prev, turn)
                flow, done = await self._step_done(ex, flow, None, turn, result, None)
                if done:
                    return
                continue
            processor = self.processors.get(node.type)
            if processor is None:
                self._log(turn, "ERROR", "node.unknown_type", node, {"nodeType": node.type})
                self._end(
                    turn,
                    End(S.FAILED, Outcome.FAILED, f"no processor for '{node.type}'"),
                    FAILURE_MESSAGE,
                )
                return
            key, interrupted = None, False
            if processor.effectful:
                # the steps before the effect, the call's key and the mark that this attempt
                # began are durable before anything goes out (see begin_call)
                key, interrupted, ex.node_state = begin_call(
                    ex.id, ex.step_seq, ex.attempts, ex.node_state
                )
                await self._commit(turn, release=False)
            calendars = await turn_calendars(self.store, self.config, turn, ex.institution_id, flow)
            now = self.clock.now()
            if turn.inbound is not None:
                _hear_language(ex, turn.inbound)
                interrupted_by = interruption(flow, turn.inbound)
                if interrupted_by is not None:  # a keyword: not an answer to this node
                    self._log(turn, "INFO", "execution.interrupted", node, interrupted_by[1])
                    flow, done = await self._step_done(
                        ex, flow, node, turn, interrupted_by[0], None
                    )
                    if done:
                        return
                    prev = node
                    continue
            signal = None
            if isinstance(node, WaitEventNode):
                signal = turn.signal
                if signal is None or signal.event != node.event:
                    # signals consumed by steps of this turn not committed yet are left out
                    taken = [i for i, _ in turn.commit.applied_signals]
                    signal = await self.store.pending_signal(ex.id, node.event, skip=taken)
                turn.signal = signal
            window = None
            if self.window_seconds is not None and isinstance(node, ContentFields):
                window = await service_window(self.store, ex, turn, self.window_seconds, now)
            ctx = StepContext(
                execution_id=ex.id,
                institution_id=ex.institution_id,
                conversation_id=ex.conversation_id,
                contact_id=ex.contact_id,
                flow=flow,
                variables={**ex.variables, "sys": sys_context(ex, flow, now, calendars)},
                node_state=ex.node_state,
                now=now,
                renders=self.renders,
                config=self.config,
                inbound=turn.inbound,
                resumed_by=turn.resumed_by,
                breakers=self.breakers,
                idempotency_key=key,
                interrupted=interrupted,
                signal=signal,
                window=window,
            )
            turn.resumed_by = None
            started = self.clock.now()
            attempt = ex.attempts + 1
            self._log(turn, "DEBUG", "node.entered", node, {"attempt": attempt})
            error: dict[str, Any] | None = None
            turn_left = None if deadline is None else deadline - started
            node_bound = node.timeout_seconds
            if node_bound is not None and processor.effectful:
                # an effectful node times its own call out, so a breaker hears the verdict;
                # the engine's bound is only a safety net behind it
                node_bound += 1.0
            # a pure node does no I/O: the deadline check above bounds it, and wrapping
            # every step in a timer task would cost a fifth of the throughput
            bounds = [b for b in (node_bound, turn_left if processor.effectful else None) if b]
            bound = min(bounds) if bounds else None
            # the node's span, current while it runs (its http call is a child)
            traced = tracing.begin_node(ex, flow, node, attempt) if tracing.active else None
            cut: BaseException | None = None
            try:
                try:
                    work = processor.run(node, ctx)
                    if bound is not None:
                        work = asyncio.wait_for(work, max(bound, 0.001))
                    if processor.effectful:
                        result = await self._holding_lease(ex, work)
                    else:
                        result = await work
                finally:
                    if processor.effectful:  # the attempt ended here, not in a crash
                        ex.node_state = call_ended(ex.node_state)
            except StaleLease as lost:
                cut = lost
                raise
            except Exception as exc:  # a failing node must not take the worker down
                if isinstance(exc, TimeoutError):
                    if turn_left is not None and bound == turn_left:
                        cut = exc
                        self._turn_timeout(ex, flow, turn, node.id)
                        return
                    exc = NodeTimeout(
                        f"node '{node.id}' took longer than {node.timeout_seconds:g}s",
                        kind="timeout",
                    )
                error = describe_error(exc)
                result = self._node_failed(ex, flow, node, turn, exc, error)
            except BaseException as stopped:  # cancelled: the span still ends, said so
                cut = stopped
                raise
            else:
                try:
                    self._within_budget(ex, result)
                except LimitExceeded as exc:
                    error = describe_error(exc)
                    result = self._node_failed(ex, flow, node, turn, exc, error)
            finally:
                if traced is not None:
                    tracing.end_node(traced, error, cut)
            duration = self.clock.now() - started
            flow, done = await self._step_done(
                ex,
                flow,
                node,
                turn,
                result,
                error,
                started=started,
                duration=duration,
                attempt=attempt,
            )
            if done:
                return
            prev = node
            if turn.steps >= limit:
                self._end(
                    turn,
                    End(S.FAILED, Outcome.FAILED, f"more than {limit} steps in one turn (a loop?)"),
                    FAILURE_MESSAGE,
                )
                return
            if self._runaway(ex, turn):
                return

    def _within_budget(self, ex: Execution, result: StepResult) -> None:
        """The values a node assigns, and the variables they would leave, fit their
        bounds (DESIGN §9): measured before anything is applied, so a node that passes
        one fails with kind ``limit`` and takes its fallback from the state it had."""
        if not result.variables:
            return
        bounds = self.config.engine
        trial = ex.variables
        for name, value in result.variables.items():
            check_value(name, value, bounds.max_value_bytes)
            trial = with_path(trial, name, value)
        size = json_bytes(trial)
        # the callers' variables, kept on the call stack, count too: a deep stack of
        # sub-flows cannot hold more than one execution may
        callers = json_bytes(ex.stack) if ex.stack else 0
        if size + callers > bounds.max_state_bytes:
            held = f" (and its callers' {callers} bytes)" if callers else ""
            raise LimitExceeded(
                f"the execution's variables would be {size} bytes{held}; the limit is"
                f" {bounds.max_state_bytes} (max_state_bytes)",
                limit=bounds.max_state_bytes,
            )

    def _runaway(self, ex: Execution, turn: _Turn) -> bool:
        """End an execution past its lifetime budget of steps, or of steps without a
        reply from the contact (a loop through a delay never ends a turn, so the
        per-turn bound alone would let it run for ever); True when it ended."""
        bounds = self.config.engine
        quiet = ex.step_seq - int(ex.meta.get(LAST_INPUT_SEQ, 0))
        if ex.step_seq >= bounds.max_steps_per_execution:
            reason = f"more than {bounds.max_steps_per_execution} steps in this execution"
            setting, limit = "max_steps_per_execution", bounds.max_steps_per_execution
        elif quiet >= bounds.max_steps_without_input:
            reason = f"{quiet} steps without a reply from the contact (a loop?)"
            setting, limit = "max_steps_without_input", bounds.max_steps_without_input
        else:
            return False
        self._log(turn, "ERROR", "execution.limit", None, {"limit": setting, "value": limit})
        ex.error = {
            "type": "LimitExceeded",
            "code": LimitExceeded.code,
            "kind": "limit",
            "message": f"{reason} ({setting})",
        }
        self._end(turn, End(S.FAILED, Outcome.FAILED, f"{reason} ({setting})"), FAILURE_MESSAGE)
        return True

    async def _step_done(
        self,
        ex: Execution,
        flow: Flow,
        node: NodeBase | None,
        turn: _Turn,
        result: StepResult,
        error: dict[str, Any] | None,
        *,
        started: float | None = None,
        duration: float = 0.0,
        attempt: int = 1,
    ) -> tuple[Flow, bool]:
        """Resolve a jump's target or a call's flow, apply the result; returns the flow
        now current and whether the turn is over."""
        target_flow: Flow | None = None
        if result.call is not None and node is not None:
            try:
                target_flow, result.call = await self._callee(ex, result.call)
            except (FlowNotFound, AccessDenied, LimitExceeded) as exc:
                self._log(
                    turn,
                    "ERROR",
                    "subflow.refused",
                    node,
                    {"flowId": result.call.flow_id, "error": str(exc)},
                )
                error = describe_error(exc)
                result = self._node_failed(ex, flow, node, turn, exc, error)
        while result.jump is not None:
            try:
                target_flow = await self.entered_flow(
                    ex.institution_id, result.jump.flow_id, result.jump.version
                )
                break
            except (FlowNotFound, AccessDenied) as exc:
                missing = isinstance(exc, FlowNotFound)
                self._log(
                    turn,
                    "WARN" if missing else "ERROR",
                    "flow.jump_target_missing" if missing else "flow.jump_target_forbidden",
                    node,
                    {"flowId": result.jump.flow_id, "error": str(exc)},
                )
                error = describe_error(exc)
                if node is None:
                    result = self._exhausted(ex, flow, None, turn, str(exc))
                else:
                    result = self._node_failed(ex, flow, node, turn, exc, error)
        done = self._apply(
            ex,
            flow,
            node,
            turn,
            result,
            self.clock.now() if started is None else started,
            duration,
            error,
            attempt,
        )
        turn.steps += 1
        if not done and (ex.flow_id, ex.flow_version) != (flow.id, flow.version):
            # a call entered a sub-flow, or a sub-flow ended and its caller runs again
            if result.call is not None and target_flow is not None:
                flow = target_flow
            else:
                flow = await self.flow(ex.flow_id, ex.flow_version)
        elif not done and result.jump is not None and target_flow is not None:
            source = (flow.id, flow.version)
            flow = target_flow
            ex.flow_id, ex.flow_version = flow.id, flow.version
            ex.current_node_id = result.jump.node_id or flow.start
            ex.node_state, ex.attempts = {}, 0
            # the trail must say which flow version runs from here (a fallback flow,
            # a sub-flow): node ids alone are ambiguous across flows
            self._log(
                turn,
                "INFO",
                "execution.flow_changed",
                None,
                {
                    "flowId": flow.id,
                    "flowVersion": flow.version,
                    "fromFlowId": source[0],
                    "fromFlowVersion": source[1],
                },
            )
        return flow, done

    # sub-flows ---------------------------------------------------------------------------

    async def _callee(self, ex: Execution, call: Call) -> tuple[Flow, Call]:
        """The flow a ``subflow`` node calls, resolved as a jump's is (the institution's
        own, else the shared one; never another's) and pinned to its version now, with
        the call checked against its bounds: the depth, each input value, and the state
        the execution would hold (the callers' variables included)."""
        bounds = self.config.engine
        depth = len(ex.stack) + 1
        if depth > bounds.max_call_depth:
            raise LimitExceeded(
                f"calling flow '{call.flow_id}' would nest {depth} sub-flows; the limit is"
                f" {bounds.max_call_depth} (max_call_depth)",
                limit=bounds.max_call_depth,
            )
        callee = await self.entered_flow(ex.institution_id, call.flow_id, call.version)
        for name, value in call.input.items():
            check_value(f"input.{name}", value, bounds.max_value_bytes)
        size = json_bytes(call.input) + json_bytes(ex.stack) + json_bytes(ex.variables)
        if size > bounds.max_state_bytes:
            raise LimitExceeded(
                f"calling flow '{call.flow_id}' would hold {size} bytes of variables (its"
                f" input and every caller's); the limit is {bounds.max_state_bytes}"
                " (max_state_bytes)",
                limit=bounds.max_state_bytes,
            )
        return callee, dataclasses.replace(
            call, flow_id=callee.id, version=callee.version, node_id=callee.start
        )

    def _call(self, turn: _Turn, call: Call) -> None:
        """Enter the (resolved) sub-flow: the caller waits on the stack."""
        ex = turn.commit.execution
        # resolved by _callee
        assert call.version is not None
        assert call.node_id is not None
        source = (ex.flow_id, ex.flow_version)
        push(
            ex,
            flow_id=call.flow_id,
            version=call.version,
            start=call.node_id,
            input=call.input,
            output=call.output,
        )
        self._flow_changed(turn, source, {"call": "enter", "depth": len(ex.stack)})

    def _return(self, turn: _Turn, end: End, handoff: HandoffRequest | None) -> None:
        """The running sub-flow ended (``end``): its caller runs again at its
        ``subflow`` node, which picks the branch."""
        ex = turn.commit.execution
        source = (ex.flow_id, ex.flow_version)
        pop(
            ex,
            end.outcome.value,
            reason=end.reason,
            queue=handoff.queue if handoff is not None else None,
            handoff_reason=handoff.reason if handoff is not None else None,
        )
        context = {"call": "return", "outcome": end.outcome.value, "reason": end.reason}
        self._flow_changed(turn, source, context | {"depth": len(ex.stack)})

    def _flow_changed(self, turn: _Turn, source: tuple[str, int], context: dict[str, Any]) -> None:
        ex = turn.commit.execution
        self._log(
            turn,
            "INFO",
            "execution.flow_changed",
            None,
            {
                "flowId": ex.flow_id,
                "flowVersion": ex.flow_version,
                "fromFlowId": source[0],
                "fromFlowVersion": source[1],
                **context,
            },
        )

    async def _timeout_returns(self, ex: Execution, turn: _Turn) -> bool:
        """No reply came in time inside a sub-flow: the nearest caller with a
        ``timeout`` branch takes it (the sub-flows between come back too); True when
        one did. With none, the whole execution times out, as outside a sub-flow."""
        for depth in range(len(ex.stack) - 1, -1, -1):
            frame = ex.stack[depth]
            caller = await self.flow(str(frame.get("flowId")), int(frame.get("version", 0)))
            node = caller.node(str(frame.get("nodeId")))
            if isinstance(node, SubflowNode) and "timeout" in node.branches:
                break
        else:
            return False
        self._move(turn, S.RUNNING, "no reply in time; a sub-flow's caller takes the timeout")
        ex.turn_started_at = self.clock.now()
        ex.waiting_for = ex.due_at = None
        reason = f"no reply to '{ex.current_node_id}' in time"
        while len(ex.stack) > depth:
            self._return(turn, End(S.TIMEOUT, Outcome.TIMEOUT, reason), None)
        return True

    async def _input_timeout(self, ex: Execution, turn: _Turn) -> None:
        flow = await self.flow(ex.flow_id, ex.flow_version)
        node = flow.node(ex.current_node_id or "")
        event = waited_event(ex.waiting_for)
        if isinstance(node, QuestionNode | WaitEventNode) and node.on_timeout:
            late = f"no reply to '{node.id}'" if event is None else f"no signal '{event}'"
            self._move(turn, S.RUNNING, f"{late} in time; following onTimeout")
            ex.turn_started_at = self.clock.now()  # a turn like any other: bounded, recorded
            ex.current_node_id, ex.node_state = node.on_timeout, {}
            ex.waiting_for = ex.due_at = None
            await self._run_nodes(ex, flow, turn)
            return
        if ex.stack and await self._timeout_returns(ex, turn):
            await self._run_nodes(ex, await self.flow(ex.flow_id, ex.flow_version), turn)
            return
        reason = "no reply from the contact in time"
        if event is not None:
            reason = f"no signal '{event}' in time"
        self._end(
            turn,
            End(S.TIMEOUT, Outcome.TIMEOUT, reason),
            spoken(flow.settings.timeout_message, ex.variables, flow.default_language),
        )

    async def _holding_lease(self, ex: Execution, work: Awaitable[T]) -> T:
        """Run ``work`` while renewing the lease; losing the lease cancels the work."""
        task = asyncio.ensure_future(work)
        lease = self.config.engine.lease_seconds
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=max(0.05, lease / 3))
                if done:
                    return task.result()
                await self.store.renew_lease(
                    ex.id, self.worker_id, ex.fencing_token, self.clock.now() + lease
                )
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # applying results -----------------------------------------------------------------------

    def _apply(
        self,
        ex: Execution,
        flow: Flow,
        node: NodeBase | None,
        turn: _Turn,
        result: StepResult,
        started: float,
        duration: float,
        error: dict[str, Any] | None,
        attempt: int = 1,
    ) -> bool:
        """Fold a node's result into the execution and the pending commit; True when the
        turn is over (the execution waits or ended)."""
        commit = turn.commit
        now = self.clock.now()
        seq = ex.step_seq + 1
        consumed: dict[str, Any] | None = None
        metrics = self.metrics
        if metrics is not None:
            metrics.node(node.type if node is not None else "missing", error is None)
            if error is not None:
                metrics.error(ex.institution_id, error_kind(error))
        if result.consumed_input and turn.inbound is not None:
            consumed = {"messageId": turn.inbound.message_id, "text": turn.inbound.text}
            commit.applied_inbox.append((turn.inbound.id, seq))
            merged = turn.extra.pop(MERGED, None)
            if merged:  # a burst taken as one reply: every message of it is applied here
                commit.applied_inbox.extend((i, seq) for i, _ in merged)
                consumed["burst"] = [m for _, m in merged]  # the earlier messages' ids
            ex.meta = {**ex.meta, LAST_INPUT_SEQ: seq}
            turn.reply_to = turn.inbound.message_id
            turn.inbound = None
            self._log(turn, "INFO", "message.received", node, consumed)
        if result.consumed_signal and turn.signal is not None:
            signal, turn.signal = turn.signal, None
            consumed = {
                "event": signal.event,
                "signalId": signal.signal_id,
                "payload": signal.payload,
            }
            commit.applied_signals.append((signal.id, seq))
            ex.meta = {**ex.meta, LAST_INPUT_SEQ: seq}
            self._log(
                turn,
                "INFO",
                "signal.applied",
                node,
                {"event": signal.event, "signalId": signal.signal_id},
            )
        for name, value in result.variables.items():
            set_path(ex.variables, name, value)
        for i, said in enumerate(result.messages):
            if isinstance(said, str):
                self._send(turn, node, _outbound(ex, seq, str(i), said, now, None, turn.reply_to))
                continue
            for note in said.truncated:
                self._log(turn, "WARN", "message.truncated", node, {"reason": note})
            if said.degraded:
                self._log(turn, "INFO", "message.degraded", node, {"changes": list(said.degraded)})
            self._send(
                turn,
                node,
                _outbound(ex, seq, str(i), said.text, now, said.content, turn.reply_to),
            )
        # a sub-flow that ends comes back to its caller (which decides what follows)
        # rather than ending the execution; a handoff in it reaches the desk only if no
        # caller takes the escalation (its subflow node hands off again then)
        returning = (
            bool(ex.stack) and result.end is not None and result.end.outcome.value in RETURNING
        )
        if result.handoff is not None and not returning:
            commit.handoffs.append(
                Handoff(
                    ex.id,
                    ex.institution_id,
                    ex.conversation_id,
                    ex.contact_id,
                    result.handoff.queue,
                    result.handoff.reason,
                    now,
                    result.handoff.mode,
                )
            )
        node_id = node.id if node is not None else ex.current_node_id
        if error is None and not isinstance(result.wait, WaitRecovery):
            ex.attempts = 0
            if node is not None and ex.error is not None and ex.error.get("nodeId") == node_id:
                recovered(ex)  # the node recovered: its errors are history (in the trail)
        if result.degraded:
            self._move(turn, S.DEGRADED, f"node '{node_id}' ran on reduced function")
        done = True
        if result.end is not None and returning:
            self._return(turn, result.end, result.handoff)
            done = False
        elif result.end is not None:
            self._end(turn, result.end, None)
        elif isinstance(result.wait, WaitInput):
            ex.node_state = result.node_state or {}
            timeout = result.wait.timeout_seconds or flow.settings.input_timeout_seconds
            due = now + timeout if result.wait.due_at is None else result.wait.due_at
            self._wait(turn, S.WAITING_INPUT, "input", due, f"waiting for a reply to '{node_id}'")
            self._turn_over(turn, now)
        elif isinstance(result.wait, WaitEvent):
            ex.node_state = result.node_state or {}
            event = result.wait.event
            self._wait(
                turn,
                S.WAITING_INPUT,
                event_wait(event),
                result.wait.due_at,
                f"waiting for event '{event}' at '{node_id}'",
            )
            self._turn_over(turn, now)
        elif isinstance(result.wait, WaitTimer):
            ex.node_state = result.node_state or {}
            self._wait(turn, S.WAITING_DELAY, "timer", result.wait.due_at, f"delay at '{node_id}'")
            self._turn_over(turn, now)
        elif isinstance(result.wait, WaitHuman):
            ex.node_state = result.node_state or {}
            queue = result.handoff.queue if result.handoff is not None else "?"
            self._hold(turn, node, result.wait, queue)
            self._turn_over(turn, now)
        elif isinstance(result.wait, WaitRecovery):
            ex.node_state = result.node_state or {}
            self._wait(
                turn, S.RECOVERING, result.wait.waiting_for, result.wait.due_at, result.wait.reason
            )
        elif result.jump is not None:
            done = False
        elif result.call is not None:
            self._call(turn, result.call)
            done = False
        else:
            target = result.next_node or (node.next if node is not None else None)
            if target is None and ex.stack:
                self._return(turn, End(reason=f"node '{node_id}' has no next node"), None)
                done = False
            elif target is None:
                self._end(turn, End(reason=f"node '{node_id}' has no next node"), None)
            else:
                ex.current_node_id, ex.node_state = target, {}
                done = False
        ex.step_seq = seq
        state = ex.state_payload()
        commit.checkpoints.append(
            Checkpoint(
                execution_id=ex.id,
                seq=seq,
                node_id=node_id,
                node_type=node.type if node is not None else None,
                status=ex.status,
                state=state,
                checksum=checksum(state),
                started_at=started,
                duration=duration,
                input=consumed,
                output=result.output,
                error=error,
                attempt=attempt,
            )
        )
        self._log(
            turn,
            "DEBUG",
            "node.left",
            node,
            {"duration": round(duration, 6), "outcome": "error" if error else "ok"},
        )
        turn.pending = True
        return done

    def _move(
        self, turn: _Turn, target: ExecutionStatus, reason: str, actor: str = "engine"
    ) -> None:
        ex = turn.commit.execution
        if ex.status is target:
            return
        check_transition(ex.status, target)
        now = self.clock.now()
        turn.commit.transitions.append(
            Transition(ex.id, ex.status, target, reason, now, actor, ex.current_node_id)
        )
        turn.commit.logs.append(
            LogRecord(
                ex.id,
                "INFO",
                "execution.state_changed",
                now,
                ex.current_node_id,
                None,
                {"from": ex.status.value, "to": target.value, "reason": reason},
            )
        )
        ex.status = target
        turn.pending = True

    def _wait(
        self, turn: _Turn, status: ExecutionStatus, what: str, due: float, reason: str
    ) -> None:
        ex = turn.commit.execution
        self._move(turn, status, reason)
        ex.waiting_for, ex.due_at, ex.wake_at = what, due, due
        self._wake_early(ex)  # a reminder or the session's expiry may come first

    def _end(self, turn: _Turn, end: End, message: str | None) -> None:
        ex = turn.commit.execution
        now = self.clock.now()
        if message:
            seq = ex.step_seq + 1
            ex.step_seq = seq
            self._send(turn, None, _outbound(ex, seq, "end", message, now, None, turn.reply_to))
        self._move(turn, end.status, end.reason)
        ex.outcome = end.outcome
        self._turn_over(turn, now)
        if end.status is not S.COMPLETED and ex.error is None:
            ex.error = {"type": end.status.value, "message": end.reason, "code": None}
        ex.waiting_for = ex.due_at = ex.wake_at = ex.turn_started_at = None
        ex.ended_at = now
        level = "ERROR" if end.status is S.FAILED else "INFO"
        turn.commit.logs.append(
            LogRecord(
                ex.id,
                level,
                "execution.ended",
                self.clock.now(),  # after the state change it follows, never before
                ex.current_node_id,
                None,
                {
                    "status": end.status.value,
                    "outcome": end.outcome.value,
                    "reason": end.reason,
                    "durationSeconds": round(now - ex.created_at, 6),
                },
            )
        )

    def _turn_over(self, turn: _Turn, now: float) -> None:
        """The turn ends (the execution waits or ended): record its duration, in the
        metrics and in the store (``trilha stats`` and the slow-turn alert read it)."""
        ex = turn.commit.execution
        if ex.turn_started_at is None:
            return
        if self.metrics is not None:
            self.metrics.turn(ex.flow_id, now - ex.turn_started_at)
        turn.commit.turns.append(
            TurnRecord(
                ex.id,
                ex.institution_id,
                ex.flow_id,
                ex.flow_version,
                ex.turn_started_at,
                now,
                ex.status.value,
            )
        )
        ex.turn_started_at = None

    def _send(self, turn: _Turn, node: NodeBase | None, message: OutboundMessage) -> None:
        """Queue ``message`` for the contact in this step's commit, and say so in the trail
        (``message.queued``; the store masks the text), so the trail alone tells what the
        contact was told. The dispatcher adds ``message.delivered`` once the channel took
        it (or ``message.delivery_failed`` / ``message.dead``)."""
        turn.commit.outbox.append(message)
        self._log(
            turn,
            "INFO",
            "message.queued",
            node,
            {"idempotencyKey": message.idempotency_key, "text": message.text},
        )

    def _log(
        self,
        turn: _Turn,
        level: str,
        message: str,
        node: NodeBase | None,
        context: dict[str, Any] | None = None,
    ) -> None:
        ex = turn.commit.execution
        turn.commit.logs.append(
            LogRecord(
                ex.id,
                level,
                message,
                self.clock.now(),
                node.id if node else ex.current_node_id,
                node.type if node else None,
                context or {},
            )
        )

    async def _commit(self, turn: _Turn, *, release: bool = True) -> None:
        commit = turn.commit
        commit.release = release
        ex = commit.execution
        if not release:
            ex.lease_expires_at = self.clock.now() + self.config.engine.lease_seconds
        logs = commit.logs
        if self._store_floor:
            commit.logs = [r for r in logs if level_rank(r.level) >= self._store_floor]
        await self.store.commit_step(commit, now=self.clock.now())
        echo_trail(logs, ex)
        turn.commit = StepCommit(ex, self.worker_id, commit.fencing_token)
        turn.pending = False
