"""Operator controls: pause, resume, cancel, advance, retry an execution by hand, and
change its variables.

Each operation reads the execution, checks the change against the one
transition table (:func:`~trilha.core.states.check_transition`), and writes
it with :meth:`~trilha.store.base.Store.operator_write`, which bumps the
fencing token: a worker in the middle of a step loses its commit
(:class:`~trilha.errors.StaleLease`) and the step is re-run later from the last
checkpoint, so nothing is applied twice. A write that races a claim or a step
commit is refused by the store and retried from a fresh read.

Every operation is audited: a transition row with the actor and the reason
(who, when, what, why) and an INFO log row ``operator.<operation>``. Advancing
an execution that is already ``running`` changes no state, so the log row
(with the nodes moved from and to) is its only record.

``paused`` makes no progress. The wait's due time and the contact's replies
(inbox rows) are kept: ``resume`` goes back to the state it was paused from,
a delay whose due time passed meanwhile fires at once and replies that
arrived are applied. A paused ``running``/``recovering``/``fallback``/
``degraded`` execution resumes as ``running``, now (a retry backoff is simply
retried now; ``paused -> recovering`` is not in the table).

``retry`` is for an execution in ``recovering`` that waits for its next attempt (a
retry backoff, or a dependency it waits for): it moves to ``running`` now and the
worker runs the failed node again as its next attempt (it counts: the node's
``maxAttempts`` still bounds it). Nothing else can be retried: ``failed`` is final
in the transition table (start a new execution instead), and an execution a worker
holds right now is already being retried.

``handback`` gives a conversation a person holds (a ``handoff`` in ``wait`` mode, see
:mod:`trilha.core.hold`) back to the bot: the execution moves to ``running`` at the
node named, else at the handoff node's ``next``, with the variables given merged in
(as ``set_variables`` sets them, bounded by ``[engine] max_value_bytes`` and
``max_state_bytes``). A held conversation is not resumed nor advanced: the person gives
it back. The contact's messages said to the person stay theirs (applied, never an
answer to the bot).

``set_variables`` changes an active execution's variables (paused ones included:
pause, fix, resume is the usual way) without changing its state, so, like an
advance of a running execution, the log row (with the paths set and unset, never
their values) is its record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from trilha.core.budget import check_value, json_bytes
from trilha.core.controls import WAITS, Operation, refusal, resume_target, target
from trilha.core.execution import Execution, LogRecord, Transition
from trilha.core.hold import handback_target, hold_view
from trilha.core.paths import READ_ONLY, is_valid_path, read_only
from trilha.core.signals import event_wait
from trilha.core.silence import next_wake
from trilha.core.states import ExecutionStatus, Outcome, check_transition
from trilha.engine.engine import Engine
from trilha.engine.turn import set_path
from trilha.errors import ConfigError, FlowError, IllegalTransition, LimitExceeded, StaleLease
from trilha.observability.logging import echo_trail
from trilha.store.base import Store

S = ExecutionStatus

#: changes the execution in place, returns the reason recorded in its history
_Change = Callable[[Execution, float], Awaitable[str]]


class Operator:
    """Pause, resume, cancel and advance executions on an operator's behalf."""

    def __init__(self, store: Store, engine: Engine, *, attempts: int = 5) -> None:
        self.store = store
        self.engine = engine
        self.clock = engine.clock
        #: read-modify-write rounds before giving up on an execution that keeps changing
        self.attempts = attempts

    async def pause(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """Stop an active execution where it is; its due time and replies are kept."""
        return await self._apply(execution_id, "pause", actor, reason, _pause)

    async def resume(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """Return a paused execution to the state it was paused from."""
        return await self._apply(execution_id, "resume", actor, reason, _resume)

    async def cancel(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """End an active execution with outcome ``cancelled``."""
        return await self._apply(execution_id, "cancel", actor, reason, _cancel)

    async def advance(
        self,
        execution_id: str,
        to_node: str | None = None,
        *,
        actor: str = "operator",
        reason: str | None = None,
    ) -> Execution:
        """Move an active execution to ``to_node`` (of the flow version it is pinned to),
        or to its current node's ``next``, and run it from there now."""

        async def change(ex: Execution, now: float) -> str:
            _allow(ex, "advance", now)
            node = await self._target(ex, to_node)
            moved_from = ex.current_node_id
            ex.status, ex.paused_from = S.RUNNING, None
            ex.current_node_id, ex.node_state, ex.attempts = node, {}, 0
            ex.waiting_for = ex.due_at = None
            ex.wake_at = ex.turn_started_at = now
            return f"advanced by an operator from '{moved_from}' to '{node}'"

        return await self._apply(execution_id, "advance", actor, reason, change)

    async def retry(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """Run the failed node of a ``recovering`` execution again now, instead of when
        its backoff (or its wait for a dependency) ends."""

        async def change(ex: Execution, now: float) -> str:
            _allow(ex, "retry", now)
            check_transition(ex.status, S.RUNNING)
            waited = ex.waiting_for or "retry"
            ex.status = S.RUNNING
            ex.waiting_for = ex.due_at = None
            ex.wake_at = now
            what = "the dependency is probed" if waited == "dependency" else "retried"
            return (
                f"retry requested by an operator: node '{ex.current_node_id}' {what} now"
                f" (attempt {ex.attempts + 1})"
            )

        return await self._apply(execution_id, "retry", actor, reason, change)

    async def set_variables(
        self,
        execution_id: str,
        assign: Mapping[str, Any] | None = None,
        unset: Sequence[str] = (),
        *,
        actor: str = "operator",
        reason: str | None = None,
    ) -> Execution:
        """Set (``assign``: dotted path -> value) and remove (``unset``: dotted paths)
        variables of an active execution; removals first. Removing a path that is not
        there is no error (so a repeated request changes nothing more)."""
        assign = dict(assign or {})
        removed = list(unset)
        check_variable_paths([*assign, *removed])
        if not assign and not removed:
            raise ConfigError("nothing to change: give variables to set or to unset")

        async def change(ex: Execution, now: float) -> str:
            _allow(ex, "variables", now)
            variables = dict(ex.variables)
            for path in removed:
                unset_path(variables, path)
            for path, value in assign.items():
                _refuse_overwrite(variables, path)
                set_path(variables, path, value)
            ex.variables = variables
            parts = []
            if assign:
                parts.append("set " + ", ".join(sorted(assign)))
            if removed:
                parts.append("unset " + ", ".join(sorted(removed)))
            return f"variables changed by an operator: {'; '.join(parts)}"

        return await self._apply(
            execution_id,
            "set_variables",
            actor,
            reason,
            change,
            {"set": sorted(assign), "unset": sorted(removed)},
        )

    async def handback(
        self,
        execution_id: str,
        to_node: str | None = None,
        variables: Mapping[str, Any] | None = None,
        *,
        actor: str = "operator",
        reason: str | None = None,
    ) -> Execution:
        """Give a conversation a person holds back to the bot: at ``to_node`` (of the flow
        version the execution is pinned to) or the handoff node's ``next``, with
        ``variables`` (dotted path -> value) set first; it runs from there now."""
        assign = dict(variables or {})
        check_variable_paths(list(assign))
        bounds = self.engine.config.engine

        async def change(ex: Execution, now: float) -> str:
            _allow(ex, "handback", now)
            flow = await self.engine.flow(ex.flow_id, ex.flow_version)
            node = handback_target(flow, ex, to_node)
            queue = (hold_view(ex) or {}).get("queue")
            merged = dict(ex.variables)
            try:
                for path, value in assign.items():
                    check_value(path, value, bounds.max_value_bytes)
                    _refuse_overwrite(merged, path)
                    set_path(merged, path, value)
            except LimitExceeded as exc:
                raise ConfigError(str(exc)) from exc
            size = json_bytes(merged)
            if size > bounds.max_state_bytes:
                raise ConfigError(
                    f"the execution's variables would be {size} bytes; the limit is"
                    f" {bounds.max_state_bytes} (max_state_bytes)"
                )
            ex.variables = merged
            ex.status, ex.paused_from = S.RUNNING, None
            ex.current_node_id, ex.node_state, ex.attempts = node, {}, 0
            ex.waiting_for = ex.due_at = None
            ex.wake_at = ex.turn_started_at = now
            return f"handed back to the bot by a person of queue '{queue}', at '{node}'"

        return await self._apply(
            execution_id, "handback", actor, reason, change, {"set": sorted(assign)}
        )

    async def _target(self, ex: Execution, to_node: str | None) -> str:
        flow = await self.engine.flow(ex.flow_id, ex.flow_version)
        where = f"flow '{flow.id}' v{flow.version} (execution {ex.id} is pinned to it)"
        if to_node is not None:
            if flow.node(to_node) is None:
                raise FlowError(f"no node '{to_node}' in {where}", node_id=to_node)
            return to_node
        node = flow.node(ex.current_node_id or "")
        if node is None:
            raise FlowError(
                f"the current node '{ex.current_node_id}' is not in {where}; name a target node",
                node_id=ex.current_node_id,
            )
        if node.next is None:
            raise FlowError(
                f"node '{node.id}' has no next node; name a target node", node_id=node.id
            )
        return node.next

    async def _apply(
        self,
        execution_id: str,
        operation: str,
        actor: str,
        reason: str | None,
        change: _Change,
        details: Mapping[str, Any] | None = None,
    ) -> Execution:
        """Read, change, write under the token read; again from a fresh read if a worker
        claimed the execution or committed a step in between."""
        for _ in range(self.attempts):
            ex = await self.store.get_execution(execution_id)
            token, source, node = ex.fencing_token, ex.status, ex.current_node_id
            now = self.clock.now()
            what = await change(ex, now)
            why = f"{what}: {reason}" if reason else what
            # an advance of a running execution stays running: not a transition, only logged
            transitions = (
                [Transition(ex.id, source, ex.status, why, now, actor, ex.current_node_id)]
                if ex.status is not source
                else []
            )
            context: dict[str, Any] = {
                "operation": operation,
                "actor": actor,
                "reason": reason,
                "from": source.value,
                "to": ex.status.value,
                **(details or {}),
            }
            if ex.current_node_id != node:
                context |= {"fromNode": node, "toNode": ex.current_node_id}
            log = LogRecord(
                ex.id, "INFO", f"operator.{operation}", now, ex.current_node_id, None, context
            )
            try:
                written = await self.store.operator_write(
                    ex, expected_token=token, transitions=transitions, logs=[log], now=now
                )
            except StaleLease:
                continue
            echo_trail([log], written)
            return written
        raise StaleLease(
            f"execution {execution_id} kept changing; {operation} was not applied"
            f" after {self.attempts} attempts, try again"
        )


async def _pause(ex: Execution, now: float) -> str:
    _allow(ex, "pause", now)
    ex.paused_from, ex.status = ex.status, S.PAUSED
    ex.wake_at = None
    ex.waiting_for = "operator"
    return "paused by an operator"


async def _resume(ex: Execution, now: float) -> str:
    _allow(ex, "resume", now)
    back_to = resume_target(ex)
    ex.status, ex.paused_from = back_to, None
    ex.waiting_for = WAITS.get(back_to)
    event = ex.node_state.get("event")
    if back_to is S.WAITING_INPUT and isinstance(event, str):
        ex.waiting_for = event_wait(event)  # a wait_event node's wait, not a question's
    if back_to is S.RUNNING:
        ex.wake_at, ex.turn_started_at = now, now
    else:  # the store wakes a waiting_input now if replies (or signals) arrived meanwhile
        wake = next_wake(ex)  # the wait's due time, or a reminder or expiry before it
        ex.wake_at = now if wake is None or wake < now else wake
    return "resumed by an operator"


async def _cancel(ex: Execution, now: float) -> str:
    _allow(ex, "cancel", now)
    ex.status, ex.outcome, ex.paused_from = S.CANCELLED, Outcome.CANCELLED, None
    ex.wake_at = ex.due_at = ex.waiting_for = None
    ex.ended_at = now
    return "cancelled by an operator"


_VERBS = {"variables": "change the variables of"}


def _allow(ex: Execution, operation: Operation, now: float) -> None:
    """Refuse ``operation`` for the reason :func:`~trilha.core.controls.refusal` gives
    (the debugger shows the same reason on the disabled button)."""
    why = refusal(ex, operation, now)
    if why is not None:
        verb = _VERBS.get(operation, operation)
        raise IllegalTransition(
            f"cannot {verb} execution {ex.id}: {why}",
            source=ex.status,
            target=target(ex, operation),
        )


#: the most paths one ``set_variables`` call may touch
MAX_VARIABLE_PATHS = 100


def check_variable_paths(paths: Sequence[str]) -> None:
    """Refuse a path an operator may not write: malformed, repeated, or reaching into a
    list by index (``set_path`` would replace the list with an object: set the whole
    list instead)."""
    if len(paths) > MAX_VARIABLE_PATHS:
        raise ConfigError(f"at most {MAX_VARIABLE_PATHS} variable paths at once, not {len(paths)}")
    seen: set[str] = set()
    for path in paths:
        problem = variable_path_problem(path)
        if problem is not None:
            raise ConfigError(f"variable path {path!r}: {problem}")
        if path in seen:
            raise ConfigError(f"variable path {path!r} is named twice (set and unset?)")
        seen.add(path)


def variable_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written by an operator, or ``None`` when it can."""
    if len(path) > 200 or not is_valid_path(path):
        return "expected dotted names like 'customer.address.city'"
    if any(part.isdigit() for part in path.split(".")):
        return "list items cannot be set by index; set the whole list"
    if read_only(path):
        return READ_ONLY
    return None


def unset_path(variables: dict[str, Any], path: str) -> None:
    """Remove ``a.b.c`` from nested objects; a path that is not there is left alone."""
    *parents, last = path.split(".")
    node: Any = variables
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def _refuse_overwrite(variables: Mapping[str, Any], path: str) -> None:
    """Setting ``a.b`` where ``a`` holds a value that is not an object would silently
    replace that value: refuse, naming it (the operator can set ``a`` itself)."""
    parts = path.split(".")
    node: Any = variables
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, Mapping) or part not in node:
            return
        node = node[part]
        if not isinstance(node, Mapping):
            held = ".".join(parts[: depth + 1])
            raise FlowError(
                f"cannot set {path!r}: {held!r} holds a {type(node).__name__}, not an object"
                f" (set {held!r} itself to replace it)"
            )
