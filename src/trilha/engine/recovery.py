"""What follows when a step cannot go on as planned (DESIGN §4).

The decisions after a failure (retry after a backoff, wait for a dependency, the
node's fallback, the flow's fallback flow, escalation to a person, failure), the
turn's deadline, and the restoration of an execution whose stored row failed its
checks. They live apart from the step loop in ``engine.py`` so the loop reads as
the happy path and each failure path is found in one place; the pure parts of the
decisions are in :mod:`trilha.core.policies`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from trilha.core.content import spoken
from trilha.core.execution import (
    Execution,
    LogRecord,
    restore_state,
    verified_state,
)
from trilha.core.flow import Flow, NodeBase
from trilha.core.policies import (
    TRANSIENT,
    ErrorKind,
    GiveUp,
    Retry,
    after_exhaustion,
    classify,
    effective_retry,
    next_round,
    parse_retry_after,
    retry_decision,
)
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.parts import EngineParts
from trilha.engine.turn import _Turn, describe_error
from trilha.errors import FlowNotFound, StaleLease, StoreError, TrilhaError
from trilha.observability.masking import mask_text
from trilha.processors.base import End, HandoffRequest, Jump, StepResult, WaitRecovery
from trilha.resilience.dependencies import WAIT_STARTED_KEY
from trilha.resilience.rounds import RETRY_ROUND_KEY, counts_against, retry_round
from trilha.store.base import StepCommit

S = ExecutionStatus

FAILURE_MESSAGE = "Sorry, something went wrong on our side. Please try again later."
ESCALATION_MESSAGE = "Sorry, I could not finish this here. A person will continue with you shortly."
#: the ``meta`` key holding the error that started an execution's trouble: the first
#: failure since it was last healthy, kept while later ones replace ``error`` (a 500
#: stays visible behind the "circuit open" it caused), dropped when it recovers
FIRST_ERROR = "firstError"


def record_failure(ex: Execution, error: dict[str, Any], at: float) -> None:
    """Make ``error`` the execution's error now, and its first error unless it already
    has one (it has been failing since then)."""
    ex.error = error
    if FIRST_ERROR not in ex.meta:
        ex.meta = {**ex.meta, FIRST_ERROR: {**error, "at": at}}


def recovered(ex: Execution) -> None:
    """The execution is healthy again: neither its error nor its first error stays."""
    ex.error = None
    if FIRST_ERROR in ex.meta:
        ex.meta = {k: v for k, v in ex.meta.items() if k != FIRST_ERROR}


def _open_entry(turn: _Turn, node_id: str | None) -> LogRecord | None:
    """The ``node.entered`` line of ``node_id`` this turn, if no ``node.left`` followed it."""
    for record in reversed(turn.commit.logs):
        if record.message in ("node.entered", "node.left"):
            entered = record.message == "node.entered" and record.node_id == node_id
            return record if entered and node_id is not None else None
    return None


class Recovery(EngineParts):
    """The failure paths of :class:`~trilha.engine.engine.Engine`, mixed into it.

    A mixin rather than a separate object because recovery and the step loop call
    each other within one turn (a failed node's decision is applied by the loop; a
    restored execution runs its nodes again) and share the turn's recording
    primitives. What recovery takes from the engine is declared in
    :class:`~trilha.engine.parts.EngineParts`, so mypy holds the halves to one contract.
    """

    # restoring ------------------------------------------------------------------------------

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
            state = verified_state(cp)
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
                # the flow version it runs on from here, so the trail alone tells it
                "flowId": ex.flow_id,
                "flowVersion": ex.flow_version,
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
        turn.resumed_by = "input" if turn.inbound is not None else None
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

    # the turn's deadline --------------------------------------------------------------------

    def _deadline(self, ex: Execution, flow: Flow) -> float | None:
        """When the current turn must end (``settings.fallback.timeoutSeconds``)."""
        if ex.turn_started_at is None:
            return None
        return ex.turn_started_at + flow.settings.fallback.timeout_seconds

    def _turn_timeout(self, ex: Execution, flow: Flow, turn: _Turn, node_id: str | None) -> None:
        limit = flow.settings.fallback.timeout_seconds
        entered = _open_entry(turn, node_id)
        if entered is not None:  # the deadline cut this node off: its entry gets its exit
            now = self.clock.now()
            turn.commit.logs.append(
                LogRecord(
                    ex.id,
                    "DEBUG",
                    "node.left",
                    now,
                    entered.node_id,
                    entered.node_type,
                    {"duration": round(now - entered.at, 6), "outcome": "timeout"},
                )
            )
        self._log(
            turn,
            "WARN",
            "execution.turn_timeout",
            None,
            {"nodeId": node_id, "timeoutSeconds": limit},
        )
        ex.error = {
            "type": "TurnTimeout",
            "code": "turn_timeout",
            "nodeId": node_id,
            "message": f"the turn took longer than {limit:g}s",
        }
        self._end(
            turn,
            End(S.TIMEOUT, Outcome.TIMEOUT, f"the turn took longer than {limit:g}s"),
            spoken(flow.settings.timeout_message, ex.variables, flow.default_language),
        )

    # after a failure ------------------------------------------------------------------------

    def _node_failed(
        self,
        ex: Execution,
        flow: Flow,
        node: NodeBase,
        turn: _Turn,
        exc: Exception,
        error: dict[str, Any],
    ) -> StepResult:
        """Decide what follows a node's failure (DESIGN §4): retry after a backoff, wait
        for a dependency, the node's fallback, or the flow-level chain."""
        now = self.clock.now()
        details = exc.details if isinstance(exc, TrilhaError) else {}
        kind = classify(type(exc).__name__, status=details.get("status"), kind=details.get("kind"))
        attempt = ex.attempts + 1
        error["kind"] = kind.value
        dependency = getattr(node, "dependency", None)
        if isinstance(dependency, str):
            # the step's error names what it called, whatever the exception carried, so
            # failures group by dependency (GET /v1/errors)
            error["details"] = {"dependency": dependency, **(error.get("details") or {})}
        summary: dict[str, Any] = {
            "type": error["type"],
            "message": error["message"],
            "code": error["code"],
            "kind": kind.value,
            "nodeId": node.id,
            "attempt": attempt,
        }
        if isinstance(dependency, str):
            summary["dependency"] = dependency
        for key in ("status", "request"):
            if isinstance(details.get(key), int | str):
                summary[key] = details[key]
        record_failure(ex, summary, now)
        if kind is ErrorKind.AMBIGUOUS:
            self._maybe_applied(turn, node, details, dependency)
        retry_after = parse_retry_after(details.get("retry_after"), now)
        if kind is ErrorKind.DEPENDENCY_UNAVAILABLE:
            return self._dependency_down(ex, flow, node, turn, details, dependency, error)
        dep_config = self.config.dependencies.get(dependency) if dependency else None
        policy = effective_retry(node, flow.settings, getattr(dep_config, "retry", None))
        decision = retry_decision(
            policy, kind=kind, attempt=attempt, rng=self.rng, retry_after=retry_after
        )
        spent = retry_round(ex.node_state)
        # a node's own ``retry`` is its author's exact budget; rounds are the dependency's
        rounds = dep_config.retry_rounds if dep_config is not None and node.retry is None else 1
        another = False
        if (
            isinstance(decision, GiveUp)
            and rounds > 1
            and attempt >= policy.max_attempts
            and kind in TRANSIENT
            and kind.value not in policy.non_retryable
            and counts_against(dep_config, kind, details)
        ):
            assert dep_config is not None  # counts_against said so
            more = next_round(
                spent=spent,
                rounds=rounds,
                pause_seconds=dep_config.retry_round_seconds,
                rng=self.rng,
                retry_after=retry_after,
            )
            another = isinstance(more, Retry)
            decision = more if another else GiveUp(f"{decision.reason}, in each of {spent} rounds")
        deadline = self._deadline(ex, flow)
        if isinstance(decision, Retry) and deadline is not None and now + decision.delay > deadline:
            # waiting would only end in a timeout: take the fallback path now instead
            decision = GiveUp(f"a retry in {decision.delay:.2f}s would outlast the turn")
        if isinstance(decision, Retry):
            ex.attempts = 0 if another else attempt
            if another:  # the next round's attempts count from 1 again
                ex.node_state = {**ex.node_state, RETRY_ROUND_KEY: spent + 1}
            if self.metrics is not None:
                self.metrics.retry(node.type)
            due = now + decision.delay
            self._log(
                turn,
                "WARN",
                "node.retry_scheduled",
                node,
                {
                    "attempt": attempt,
                    "maxAttempts": policy.max_attempts,
                    "round": spent,
                    "rounds": rounds,
                    "delaySeconds": round(decision.delay, 3),
                    "error": error,
                },
            )
            then = f"round {spent + 1}/{rounds}" if another else "retrying"
            return StepResult(
                wait=WaitRecovery(
                    due,
                    "retry",
                    f"node '{node.id}' attempt {attempt}/{policy.max_attempts} failed"
                    f" ({kind.value}: {exc}); {then} in {decision.delay:.2f}s",
                ),
                node_state=ex.node_state,
                output={"error": kind.value, "attempt": attempt},
            )
        reason = f"node '{node.id}' failed: {exc} ({decision.reason})"
        self._log(turn, "ERROR", "node.failed", node, {"error": error, "reason": decision.reason})
        if node.fallback is not None:
            if self.metrics is not None:
                self.metrics.fallback("node")
            self._move(turn, S.FALLBACK, f"{reason}; following its fallback")
            return StepResult(next_node=node.fallback.next, output={"fallback": node.fallback.next})
        return self._exhausted(ex, flow, node, turn, reason)

    def _maybe_applied(
        self, turn: _Turn, node: NodeBase, details: dict[str, Any], dependency: str | None
    ) -> None:
        """The trail's word that a call which changes things may have been applied
        although the step failed (its answer was lost), so whoever reads the execution
        knows to check the service before doing it again by hand."""
        request = details.get("request")
        self._log(
            turn,
            "WARN",
            "node.call_maybe_applied",
            node,
            {
                "request": mask_text(request) if isinstance(request, str) else None,
                "dependency": dependency,
                "idempotencyKey": details.get("idempotency_key"),
                "cause": details.get("cause"),
            },
        )

    def _dependency_down(
        self,
        ex: Execution,
        flow: Flow,
        node: NodeBase,
        turn: _Turn,
        details: dict[str, Any],
        dependency: str | None,
        error: dict[str, Any],
    ) -> StepResult:
        """A dependency's breaker is open (DESIGN §4): wait for it when the node says so,
        else run degraded through the node's fallback; a node with neither waits for the
        reconnection too, bounded by the turn, then the flow-level chain escalates.
        Refused calls do not spend retry attempts: no request went out."""
        now = self.clock.now()
        wait = getattr(node, "wait_for_dependency", None)
        started = float(ex.node_state.get(WAIT_STARTED_KEY, now))
        limit: float | None = getattr(wait, "max_wait_seconds", None)
        if limit is None and node.fallback is None:
            limit = flow.settings.fallback.timeout_seconds
            deadline = self._deadline(ex, flow)
            if deadline is not None:  # escalate before the turn would time out
                limit = min(limit, max(0.0, deadline - started - 1.0))
        if limit is not None and now - started < limit:
            dep_config = self.config.dependencies.get(dependency) if dependency else None
            interval = float(getattr(dep_config, "wait_probe_interval_seconds", 5.0))
            retry_at = details.get("retry_at")
            due = float(retry_at) if isinstance(retry_at, int | float) else now + interval
            due = min(max(due, now + interval), started + limit)
            self._log(
                turn,
                "WARN",
                "dependency.waiting",
                node,
                {
                    "dependency": dependency,
                    "until": due,
                    "waitedSeconds": now - started,
                    "error": error,
                },
            )
            return StepResult(
                wait=WaitRecovery(
                    due, "dependency", f"dependency '{dependency}' unavailable; waiting for it"
                ),
                node_state={**ex.node_state, WAIT_STARTED_KEY: started},
                output={"waitingFor": dependency},
            )
        reason = f"dependency '{dependency}' unavailable"
        if limit is not None:
            reason += f" for {limit:g}s"
        if node.fallback is not None:
            self._log(
                turn, "WARN", "node.degraded", node, {"dependency": dependency, "error": error}
            )
            if self.metrics is not None:
                self.metrics.fallback("degraded")
            self._move(turn, S.DEGRADED, f"{reason}; running degraded via the node's fallback")
            return StepResult(next_node=node.fallback.next, output={"degraded": dependency})
        self._log(
            turn,
            "ERROR",
            "node.failed",
            node,
            {"dependency": dependency, "reason": reason, "error": error},
        )
        return self._exhausted(ex, flow, node, turn, reason)

    def _exhausted(
        self, ex: Execution, flow: Flow, node: NodeBase | None, turn: _Turn, reason: str
    ) -> StepResult:
        """Retries and the node's own fallback are spent: the global fallback flow, then
        escalation to a person, then failure (DESIGN §4). Inside a sub-flow the chain is
        its caller's: the sub-flow ends ``failed`` and its caller decides what follows."""
        if ex.stack:
            self._log(turn, "WARN", "subflow.failed", node, {"reason": reason})
            return StepResult(end=End(S.FAILED, Outcome.FAILED, reason), output={"failed": reason})
        settings = flow.settings
        origin = ex.meta.get("fallbackFrom")
        if isinstance(origin, dict):  # in the fallback flow: the original flow's settings rule
            original = self._flows.get((str(origin.get("flowId")), int(origin.get("version", 0))))
            settings = original.settings if original is not None else settings
        decision = after_exhaustion(settings, in_fallback_flow=bool(ex.meta.get("inFallbackFlow")))
        if decision.action == "fallback_flow" and decision.flow_id:
            if self.metrics is not None:
                self.metrics.fallback("flow")
            self._move(turn, S.FALLBACK, f"{reason}; running fallback flow '{decision.flow_id}'")
            ex.meta = {
                **ex.meta,
                "inFallbackFlow": True,
                "fallbackFrom": {
                    "flowId": ex.flow_id,
                    "version": ex.flow_version,
                    "nodeId": ex.current_node_id,
                },
            }
            error = {
                "flowId": ex.flow_id,
                "nodeId": ex.current_node_id,
                "reason": reason,
                **{k: v for k, v in (ex.error or {}).items() if k in ("type", "message", "kind")},
            }
            return StepResult(
                jump=Jump(decision.flow_id),
                variables={"error": error},
                output={"fallbackFlow": decision.flow_id},
            )
        if decision.action == "escalate":
            self._log(turn, "WARN", "execution.escalated", node, {"reason": reason})
            if self.metrics is not None:
                self.metrics.escalation()
            return StepResult(
                messages=[ESCALATION_MESSAGE],
                handoff=HandoffRequest("escalation", reason),
                end=End(S.COMPLETED, Outcome.ESCALATED, f"{reason}; escalated to a person"),
                output={"escalated": True},
            )
        return StepResult(end=End(S.FAILED, Outcome.FAILED, reason), messages=[FAILURE_MESSAGE])

    def _missing_node(
        self, ex: Execution, flow: Flow, prev: NodeBase | None, turn: _Turn
    ) -> StepResult:
        """The current node does not exist: the previous node's fallback, the flow's
        onMissingNode, then the flow-level chain, never a crash (WARN with the id)."""
        missing = ex.current_node_id
        self._log(
            turn,
            "WARN",
            "node.missing",
            None,
            {"missingNodeId": missing, "flowId": flow.id, "flowVersion": flow.version},
        )
        why = f"node '{missing}' not found in flow '{flow.id}' v{flow.version}"
        record_failure(
            ex,
            {"type": "NodeNotFound", "code": "node_not_found", "message": why, "nodeId": missing},
            self.clock.now(),
        )
        for target, via in (
            (
                prev.fallback.next if prev and prev.fallback else None,
                "the previous node's fallback",
            ),
            (flow.on_missing_node, "onMissingNode"),
        ):
            if target and target != missing and flow.node(target) is not None:
                if self.metrics is not None:
                    self.metrics.fallback("node")
                self._move(turn, S.FALLBACK, f"{why}; following {via}")
                return StepResult(next_node=target, output={"missing": missing, "via": target})
        return self._exhausted(ex, flow, None, turn, why)
