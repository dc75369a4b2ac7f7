"""The step loop: the only place where the pure core meets the store.

A worker claims an execution (a lease with a fencing token), runs its nodes
one at a time through their processors and commits what they decided. Pure
nodes (``set``, ``condition``, ``message``...) have no outside effect until
commit, so a run of them shares one transaction, each still with its own
checkpoint row; before an effectful node (``http``) the pending steps are
committed so a crash re-runs only the effect. Nothing is held in memory while
an execution waits: the wait is a ``wake_at`` in its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from trilha.config import Config
from trilha.core.execution import (
    CHECKPOINT_SCHEMA_VERSION,
    Checkpoint,
    Execution,
    Handoff,
    InboundMessage,
    LogRecord,
    OutboundMessage,
    Transition,
    checksum,
    restore_state,
)
from trilha.core.flow import Flow, NodeBase, QuestionNode, load_flow
from trilha.core.states import ExecutionStatus, Outcome, check_transition
from trilha.engine.clock import Clock, SystemClock
from trilha.errors import FlowNotFound, StaleLease, StoreError, TrilhaError
from trilha.processors.base import End, StepContext, StepResult, WaitInput, WaitTimer
from trilha.processors.registry import Processors
from trilha.resilience.breaker import BreakerRegistry
from trilha.store.base import Claimed, StepCommit, Store

S = ExecutionStatus
T = TypeVar("T")

FAILURE_MESSAGE = "Sorry, something went wrong on our side. Please try again later."


def _verified_state(cp: Checkpoint) -> dict[str, Any] | None:
    """A checkpoint's state if its checksum, schema version and shape hold, else None."""
    if cp.schema_version != CHECKPOINT_SCHEMA_VERSION or checksum(cp.state) != cp.checksum:
        return None
    try:
        state = orjson.loads(cp.state)
        probe = Execution(
            id="probe",
            institution_id="",
            conversation_id="",
            contact_id="",
            flow_id="",
            flow_version=1,
            status=S.RUNNING,
            current_node_id=None,
            variables={},
            created_at=0.0,
            updated_at=0.0,
        )
        restore_state(probe, state)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        return None
    return state if isinstance(state, dict) else None


def new_id() -> str:
    return uuid.uuid4().hex


def set_path(variables: dict[str, Any], path: str, value: Any) -> None:
    """Assign ``a.b.c`` inside nested objects, replacing non-objects on the way."""
    head, *rest = path.split(".")
    if not rest:
        variables[head] = value
        return
    child = variables.get(head)
    if not isinstance(child, dict):
        child = {}
        variables[head] = child
    set_path(child, ".".join(rest), value)


def describe_error(exc: BaseException) -> dict[str, Any]:
    details = exc.details if isinstance(exc, TrilhaError) else {}
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "code": getattr(exc, "code", None),
        "details": {k: v for k, v in details.items() if isinstance(v, str | int | float | None)},
        "stack": "".join(traceback.format_exception(exc, limit=8))[-4000:],
    }


@dataclass(slots=True)
class _Turn:
    """The parts of one commit being accumulated while nodes run."""

    commit: StepCommit
    inbound: InboundMessage | None
    resumed_by: str | None
    steps: int = 0
    pending: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Starts executions, feeds them input, and advances claimed ones."""

    def __init__(
        self,
        store: Store,
        *,
        processors: Processors | None = None,
        config: Config | None = None,
        clock: Clock | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.processors = processors or Processors.from_entry_points()
        self.config = config or Config()
        self.clock = clock or SystemClock()
        self.worker_id = worker_id or f"worker-{new_id()[:12]}"
        self._flows: dict[tuple[str, int], Flow] = {}
        self.breakers = BreakerRegistry(self.clock)

    # flows --------------------------------------------------------------------------------

    async def publish(self, flow: Flow) -> int:
        """Store ``flow``: an unchanged definition keeps its version, a changed one is the next."""
        return await self.store.publish_flow(flow.id, flow.wire(), self.clock.now())

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
        flow = load_flow(stored.definition, self.processors.node_types)
        self._flows[(flow_id, stored.version)] = flow
        return flow

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
    ) -> Execution:
        """Create an execution, ready to be claimed now."""
        flow = await self.flow(flow_id, version)
        now = self.clock.now()
        start_vars = dict(variables or {})
        execution = Execution(
            id=new_id(),
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
            },
        )
        return await self.store.create_execution(execution, transition, [log], replace=replace)

    async def send(self, execution_id: str, text: str, *, message_id: str | None = None) -> Any:
        """Deliver a contact's reply to a stored execution (durably, then wake it)."""
        execution = await self.store.get_execution(execution_id)
        return await self.store.deliver_inbound(
            institution_id=execution.institution_id,
            conversation_id=execution.conversation_id,
            message_id=message_id or new_id(),
            contact_id=execution.contact_id,
            text=text,
            payload=None,
            now=self.clock.now(),
            execution_id=execution_id,
        )

    # the step loop --------------------------------------------------------------------------

    async def run_once(self, *, limit: int | None = None, execution_id: str | None = None) -> int:
        """Claim what is due and advance it; returns how many executions were claimed."""
        claims = await self.store.claim_due(
            self.worker_id,
            now=self.clock.now(),
            lease_seconds=self.config.engine.lease_seconds,
            limit=limit or self.config.engine.batch_size,
            execution_id=execution_id,
        )
        if claims:
            await asyncio.gather(*(self.advance(c) for c in claims))
        return len(claims)

    async def advance(self, claimed: Claimed) -> None:
        """Run one claimed execution until it waits, ends, or loses its lease."""
        ex = claimed.execution
        turn = _Turn(StepCommit(ex, self.worker_id, ex.fencing_token), claimed.inbound, None)
        try:
            if claimed.corruption is not None:
                await self._restore(ex, turn, claimed.corruption)
            else:
                await self._advance(ex, turn)
        except StaleLease:
            return  # another worker owns it now; it resumes from the last checkpoint
        except StoreError:
            raise  # the worker loop backs off and retries; the lease protects the row
        except Exception as exc:  # a bug must not wedge the execution or kill the worker
            await self._fail_internal(ex.id, ex.fencing_token, exc)

    async def _restore(self, ex: Execution, turn: _Turn, reason: str) -> None:
        """Bring back an execution whose row failed its checks (DESIGN §4): from the
        last valid checkpoint, else from the flow's start (or to a graceful end, as
        ``settings.onCorruption`` says). The bad row was quarantined by the store."""
        now = self.clock.now()
        checkpoints = await self.store.checkpoints(ex.id)
        history = await self.store.transitions(ex.id)
        if history:
            ex.status = history[-1].target  # the state the row last held, for the trail
        ex.step_seq = max([ex.step_seq, *(c.seq for c in checkpoints)])
        restored_from: int | None = None
        for cp in reversed(checkpoints):
            state = _verified_state(cp)
            if state is None:
                await self.store.quarantine(
                    ex.id,
                    kind="checkpoint",
                    reason=f"checkpoint {cp.seq} fails its checks",
                    payload={"seq": cp.seq, "state": cp.state, "checksum": cp.checksum},
                    now=now,
                )
                continue
            status_before = ex.status
            restore_state(ex, state)
            ex.status = status_before
            restored_from = cp.seq
            break
        self._log(
            turn,
            "ERROR",
            "execution.corrupted",
            None,
            {
                "error": {"type": "CorruptedRecord", "message": reason},
                "restoredFromCheckpoint": restored_from,
            },
        )
        if ex.status is not S.RECOVERING:
            self._move(turn, S.RECOVERING, f"corrupted state ({reason}); restoring")
        try:
            flow = await self.flow(ex.flow_id, ex.flow_version)
        except FlowNotFound as exc:
            self._end(
                turn, End(S.FAILED, Outcome.FAILED, f"cannot restore: {exc}"), FAILURE_MESSAGE
            )
            await self._commit(turn)
            return
        if restored_from is None:
            if flow.settings.on_corruption == "end":
                self._end(
                    turn,
                    End(S.FAILED, Outcome.FAILED, "corrupted state and no valid checkpoint"),
                    FAILURE_MESSAGE,
                )
                await self._commit(turn)
                return
            ex.current_node_id, ex.variables = flow.start, dict(ex.start_variables)
            ex.node_state, ex.meta, ex.attempts = {}, {}, 0
            self._move(turn, S.RUNNING, "no valid checkpoint: restarted from the flow's start")
        else:
            self._move(turn, S.RUNNING, f"restored from checkpoint {restored_from}")
        ex.turn_started_at = now
        await self._run_nodes(ex, flow, turn)
        await self._commit(turn)

    async def _fail_internal(self, execution_id: str, token: int, exc: Exception) -> None:
        """End an execution whose step raised unexpectedly, from its last committed state,
        so it is neither retried for ever nor left without a trail."""
        try:
            ex = await self.store.get_execution(execution_id)
        except StoreError:
            return
        if ex.fencing_token != token or ex.status.terminal:
            return
        turn = _Turn(StepCommit(ex, self.worker_id, token), None, None)
        error = describe_error(exc)
        ex.error = {k: error[k] for k in ("type", "message", "code")}
        self._log(turn, "ERROR", "execution.internal_error", None, {"error": error})
        if ex.status is S.PAUSED:
            return
        self._end(turn, End(S.FAILED, Outcome.FAILED, f"internal error: {exc}"), FAILURE_MESSAGE)
        with contextlib.suppress(StaleLease):
            await self._commit(turn)

    async def _advance(self, ex: Execution, turn: _Turn) -> None:
        now = self.clock.now()
        if ex.status is S.WAITING_INPUT:
            if turn.inbound is not None:
                turn.resumed_by = "input"
                self._move(turn, S.RUNNING, "input received")
            elif ex.due_at is not None and now >= ex.due_at:
                await self._input_timeout(ex, turn)
                await self._commit(turn)
                return
            else:  # woken with nothing to do (a stale wake): go back to sleep
                ex.wake_at = ex.due_at
                await self._commit(turn)
                return
        elif ex.status is S.WAITING_DELAY:
            turn.resumed_by = "timer"
            self._move(turn, S.RUNNING, "timer fired")
        elif ex.status.terminal or ex.status is S.PAUSED:
            ex.wake_at = None
            await self._commit(turn)
            return
        try:
            flow = await self.flow(ex.flow_id, ex.flow_version)
        except FlowNotFound as exc:
            self._end(turn, End(S.FAILED, Outcome.FAILED, str(exc)), FAILURE_MESSAGE)
            await self._commit(turn)
            return
        await self._run_nodes(ex, flow, turn)
        await self._commit(turn)

    async def _run_nodes(self, ex: Execution, flow: Flow, turn: _Turn) -> None:
        limit = self.config.engine.max_steps_per_turn
        while True:
            node = flow.node(ex.current_node_id) if ex.current_node_id else None
            if node is None:
                flow, node = await self._missing_node(ex, flow, turn)
                if node is None:
                    return
            processor = self.processors.get(node.type)
            if processor is None:
                self._log(turn, "ERROR", "node.unknown_type", node, {"nodeType": node.type})
                self._end(
                    turn,
                    End(S.FAILED, Outcome.FAILED, f"no processor for '{node.type}'"),
                    FAILURE_MESSAGE,
                )
                return
            if processor.effectful and turn.pending:
                await self._commit(turn, release=False)
            ctx = StepContext(
                execution_id=ex.id,
                institution_id=ex.institution_id,
                conversation_id=ex.conversation_id,
                contact_id=ex.contact_id,
                flow=flow,
                variables=ex.variables,
                node_state=ex.node_state,
                now=self.clock.now(),
                config=self.config,
                inbound=turn.inbound,
                resumed_by=turn.resumed_by,
                breakers=self.breakers,
            )
            turn.resumed_by = None
            started = self.clock.now()
            self._log(turn, "DEBUG", "node.entered", node)
            error: dict[str, Any] | None = None
            try:
                if processor.effectful:
                    result = await self._holding_lease(ex, processor.run(node, ctx))
                else:
                    result = await processor.run(node, ctx)
            except StaleLease:
                raise
            except Exception as exc:  # a failing node must not take the worker down
                error = describe_error(exc)
                result = self._node_failed(turn, node, exc, error)
            duration = self.clock.now() - started
            done = self._apply(ex, flow, node, turn, result, started, duration, error)
            turn.steps += 1
            if done:
                return
            if result.jump is not None:
                try:
                    flow = await self.flow(result.jump.flow_id, result.jump.version)
                except FlowNotFound as exc:
                    self._log(turn, "WARN", "flow.jump_target_missing", node, {"error": str(exc)})
                    self._end(turn, End(S.FAILED, Outcome.FAILED, str(exc)), FAILURE_MESSAGE)
                    return
                ex.flow_id, ex.flow_version = flow.id, flow.version
                ex.current_node_id = result.jump.node_id or flow.start
                ex.node_state = {}
            if turn.steps >= limit:
                self._end(
                    turn,
                    End(S.FAILED, Outcome.FAILED, f"more than {limit} steps in one turn (a loop?)"),
                    FAILURE_MESSAGE,
                )
                return

    def _node_failed(
        self, turn: _Turn, node: NodeBase, exc: Exception, error: dict[str, Any]
    ) -> StepResult:
        self._log(turn, "ERROR", "node.failed", node, {"error": error})
        ex = turn.commit.execution
        ex.error = {k: error[k] for k in ("type", "message", "code")} | {"nodeId": node.id}
        if node.fallback is not None:
            self._move(turn, S.FALLBACK, f"node '{node.id}' failed: {exc}; following its fallback")
            return StepResult(next_node=node.fallback.next, output={"fallback": node.fallback.next})
        return StepResult(
            end=End(S.FAILED, Outcome.FAILED, f"node '{node.id}' failed: {exc}"),
            messages=[FAILURE_MESSAGE],
        )

    async def _missing_node(
        self, ex: Execution, flow: Flow, turn: _Turn
    ) -> tuple[Flow, NodeBase | None]:
        missing = ex.current_node_id
        self._log(turn, "WARN", "node.missing", None, {"missingNodeId": missing, "flowId": flow.id})
        if flow.on_missing_node and flow.on_missing_node != missing:
            target = flow.node(flow.on_missing_node)
            if target is not None:
                self._move(turn, S.FALLBACK, f"node '{missing}' not found; following onMissingNode")
                ex.current_node_id, ex.node_state = target.id, {}
                return flow, target
        self._end(
            turn,
            End(
                S.FAILED,
                Outcome.FAILED,
                f"node '{missing}' not found in flow '{flow.id}' v{flow.version}",
            ),
            FAILURE_MESSAGE,
        )
        return flow, None

    async def _input_timeout(self, ex: Execution, turn: _Turn) -> None:
        flow = await self.flow(ex.flow_id, ex.flow_version)
        node = flow.node(ex.current_node_id or "")
        if isinstance(node, QuestionNode) and node.on_timeout:
            self._move(turn, S.RUNNING, f"no reply to '{node.id}' in time; following onTimeout")
            ex.current_node_id, ex.node_state = node.on_timeout, {}
            ex.waiting_for = ex.due_at = None
            await self._run_nodes(ex, flow, turn)
            return
        self._end(
            turn,
            End(S.TIMEOUT, Outcome.TIMEOUT, "no reply from the contact in time"),
            flow.settings.timeout_message,
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
        node: NodeBase,
        turn: _Turn,
        result: StepResult,
        started: float,
        duration: float,
        error: dict[str, Any] | None,
    ) -> bool:
        """Fold a node's result into the execution and the pending commit; True when the
        turn is over (the execution waits or ended)."""
        commit = turn.commit
        now = self.clock.now()
        seq = ex.step_seq + 1
        consumed = None
        if result.consumed_input and turn.inbound is not None:
            consumed = {"messageId": turn.inbound.message_id, "text": turn.inbound.text}
            commit.applied_inbox.append((turn.inbound.id, seq))
            turn.inbound = None
        for name, value in result.variables.items():
            set_path(ex.variables, name, value)
        for i, text in enumerate(result.messages):
            commit.outbox.append(
                OutboundMessage(
                    idempotency_key=f"{ex.id}:{seq}:{i}",
                    execution_id=ex.id,
                    institution_id=ex.institution_id,
                    conversation_id=ex.conversation_id,
                    contact_id=ex.contact_id,
                    channel=ex.channel,
                    text=text,
                    created_at=now,
                    step_seq=seq,
                )
            )
        if result.handoff is not None:
            commit.handoffs.append(
                Handoff(
                    ex.id,
                    ex.institution_id,
                    ex.conversation_id,
                    ex.contact_id,
                    result.handoff.queue,
                    result.handoff.reason,
                    now,
                )
            )
        done = True
        if result.end is not None:
            self._end(turn, result.end, None)
        elif isinstance(result.wait, WaitInput):
            ex.node_state = result.node_state or {}
            timeout = result.wait.timeout_seconds or flow.settings.input_timeout_seconds
            self._wait(
                turn, S.WAITING_INPUT, "input", now + timeout, f"waiting for a reply to '{node.id}'"
            )
        elif isinstance(result.wait, WaitTimer):
            ex.node_state = result.node_state or {}
            self._wait(turn, S.WAITING_DELAY, "timer", result.wait.due_at, f"delay at '{node.id}'")
        elif result.jump is not None:
            done = False
        else:
            target = result.next_node or node.next
            if target is None:
                self._end(turn, End(reason=f"node '{node.id}' has no next node"), None)
            else:
                ex.current_node_id, ex.node_state = target, {}
                done = False
        ex.step_seq = seq
        state = ex.state_payload()
        commit.checkpoints.append(
            Checkpoint(
                execution_id=ex.id,
                seq=seq,
                node_id=node.id,
                node_type=node.type,
                status=ex.status,
                state=state,
                checksum=checksum(state),
                started_at=started,
                duration=duration,
                input=consumed,
                output=result.output,
                error=error,
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

    def _end(self, turn: _Turn, end: End, message: str | None) -> None:
        ex = turn.commit.execution
        now = self.clock.now()
        if message:
            seq = ex.step_seq + 1
            ex.step_seq = seq
            turn.commit.outbox.append(
                OutboundMessage(
                    idempotency_key=f"{ex.id}:{seq}:end",
                    execution_id=ex.id,
                    institution_id=ex.institution_id,
                    conversation_id=ex.conversation_id,
                    contact_id=ex.contact_id,
                    channel=ex.channel,
                    text=message,
                    created_at=now,
                    step_seq=seq,
                )
            )
        self._move(turn, end.status, end.reason)
        ex.outcome = end.outcome
        if end.status is not S.COMPLETED and ex.error is None:
            ex.error = {"type": end.status.value, "message": end.reason, "code": None}
        ex.waiting_for = ex.due_at = ex.wake_at = None
        ex.ended_at = now
        level = "ERROR" if end.status is S.FAILED else "INFO"
        turn.commit.logs.append(
            LogRecord(
                ex.id,
                level,
                "execution.ended",
                now,
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
        await self.store.commit_step(commit, now=self.clock.now())
        turn.commit = StepCommit(ex, self.worker_id, commit.fencing_token)
        turn.pending = False
