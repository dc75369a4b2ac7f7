"""The debugger's buttons and the operator agree: for every state and every operation,
the real :class:`Operator` over a real SQLite store succeeds exactly when
:func:`controls` says the operation is allowed, and when it refuses, it gives the
same reason (``message`` is not an operator method and is left out here).

Executions are put in each state two ways: by the real engine where a flow gets
there (a question, a delay, a failing call, a reply, a timeout, an operator's pause
or cancel), and by writing the state straight into the store for all eleven (the
engine holds ``fallback`` and ``degraded`` only in the middle of a turn).
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from trilha.config import BreakerConfig, Config, DependencyConfig
from trilha.core.controls import OPERATIONS, controls, target
from trilha.core.execution import Execution, Transition
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.operator import Operator
from trilha.errors import IllegalTransition

S = ExecutionStatus
LEASE = 30.0
#: the operations the Operator has, by the name the controls use
OPERATOR_OPERATIONS = [o for o in OPERATIONS if o != "message"]
VERBS = {"variables": "change the variables of"}

FLOW = {
    "id": "agree",
    "start": "hello",
    "settings": {"inputTimeoutSeconds": 3600, "fallback": {"timeoutSeconds": 86_400}},
    "nodes": [
        {"id": "hello", "type": "message", "text": "hi", "next": "ask"},
        {"id": "ask", "type": "question", "text": "name?", "variable": "name", "next": "nap"},
        {"id": "nap", "type": "delay", "seconds": 60, "next": "bye"},
        {"id": "bye", "type": "end", "text": "bye {{name}}"},
    ],
}


#: a person holds the conversation (a 'wait' handoff), then the bot says goodbye
HELD = {
    "id": "held",
    "start": "desk",
    "nodes": [
        {"id": "desk", "type": "handoff", "mode": "wait", "queue": "q", "next": "bye"},
        {"id": "bye", "type": "end", "text": "bye"},
    ],
}


def calling(max_attempts: int, url: str = "/data") -> dict[str, Any]:
    return {
        "id": f"call{max_attempts}",
        "start": "call",
        "settings": {"fallback": {"timeoutSeconds": 86_400}},
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "svc",
                "url": url,
                "saveAs": "data",
                "retry": {
                    "maxAttempts": max_attempts,
                    "initialIntervalSeconds": 600,
                    "maxIntervalSeconds": 600,
                    "backoffCoefficient": 1,
                    "jitter": False,
                },
                "next": "bye",
            },
            {"id": "bye", "type": "end", "text": "got it"},
        ],
    }


class World:
    """One harness (engine, worker, SQLite store, fake clock) and a way to make fresh
    executions in a given state."""

    def __init__(self, h: Any) -> None:
        self.h = h
        self.operator = Operator(h.store, h.engine)
        self.conversations = itertools.count(1)

    async def publish(self) -> None:
        await self.h.publish(FLOW)
        await self.h.publish(HELD)
        await self.h.publish(calling(3))
        await self.h.publish(calling(1))

    async def start(self, flow_id: str = "agree") -> Execution:
        return await self.h.start(flow_id, conversation=f"conv-{next(self.conversations)}")

    async def settled(self, flow_id: str = "agree") -> Execution:
        ex = await self.start(flow_id)
        await self.h.settle(ex.id)
        return await self.h.get(ex.id)

    # by the engine ------------------------------------------------------------------
    async def naturally(self, status: ExecutionStatus) -> Execution:
        h = self.h
        if status is S.RUNNING:
            ex = await self.start()
        elif status is S.WAITING_INPUT:
            ex = await self.settled()
        elif status is S.WAITING_DELAY:
            ex = await h.reply((await self.settled()).id, "Ana")
        elif status is S.PAUSED:
            ex = await self.operator.pause((await self.settled()).id)
        elif status is S.CANCELLED:
            ex = await self.operator.cancel((await self.settled()).id)
        elif status is S.COMPLETED:
            ex = await h.reply((await self.settled()).id, "Ana")
            h.clock.advance(61)
            await h.settle(ex.id)
        elif status is S.TIMEOUT:
            ex = await self.settled()
            h.clock.advance(3601)
            await h.settle(ex.id)
        elif status is S.RECOVERING:
            ex = await self.settled("call3")
        elif status is S.FAILED:
            ex = await self.settled("call1")
        else:
            raise AssertionError(f"no flow stops in {status}")
        ex = await h.get(ex.id)
        assert ex.status is status, (status, ex)
        return ex

    # written straight into the store --------------------------------------------------
    async def placed(self, status: ExecutionStatus, lease: str | None = None) -> Execution:
        """A fresh execution moved to ``status`` by a write of the state the engine would
        leave; ``lease``: ``"live"`` (a worker holds it) or ``"expired"`` (its lease ran out)."""
        h = self.h
        now = h.clock.now()
        row = await h.get((await self.start()).id)
        row.status = status
        row.waiting_for = row.due_at = None
        row.wake_at = now
        if status is S.WAITING_INPUT:
            row.current_node_id, row.waiting_for = "ask", "input"
            row.due_at = row.wake_at = now + 3600
        elif status is S.WAITING_DELAY:
            row.current_node_id, row.waiting_for = "nap", "timer"
            row.due_at = row.wake_at = now + 60
        elif status is S.RECOVERING:
            row.waiting_for, row.attempts, row.wake_at = "retry", 1, now + 600
        elif status is S.PAUSED:
            row.paused_from, row.waiting_for, row.wake_at = S.WAITING_INPUT, "operator", None
            row.current_node_id, row.due_at = "ask", now + 3600
        elif status.terminal:
            row.outcome = Outcome.COMPLETED if status is S.COMPLETED else Outcome(status.value)
            row.ended_at, row.wake_at = now, None
        if lease is not None:
            row.wake_at = now  # claimable now, so a worker can take it
        moved = [Transition(row.id, S.RUNNING, status, "placed", now, "test", row.current_node_id)]
        await h.store.operator_write(
            row,
            expected_token=row.fencing_token,
            transitions=moved if status is not S.RUNNING else [],
            logs=[],
            now=now,
        )
        if lease is not None:
            (claimed,) = await h.store.claim_due(
                "w9", now=now, lease_seconds=LEASE, limit=1, execution_id=row.id
            )
            assert claimed.execution.lease_expires_at == now + LEASE
            if lease == "expired":
                h.clock.advance(LEASE + 1)
        ex = await h.get(row.id)
        assert ex.status is status
        return ex

    # the property --------------------------------------------------------------------
    async def operate(self, operation: str, execution_id: str) -> Execution:
        op = self.operator
        if operation == "advance":
            return await op.advance(execution_id, "bye")
        if operation == "variables":
            return await op.set_variables(execution_id, {"note": "checked"})
        call: Callable[[str], Awaitable[Execution]] = getattr(op, operation)
        return await call(execution_id)

    async def agree(self, make: Callable[[], Awaitable[Execution]]) -> dict[str, str | None]:
        """For each operation, on a fresh execution from ``make``: what the controls said
        (``None``: allowed) and check the operator did just that."""
        said: dict[str, str | None] = {}
        for operation in OPERATOR_OPERATIONS:
            before = await make()
            now = self.h.clock.now()
            control = controls(before, now)[operation]
            said[operation] = control.reason
            if not control.allowed:
                with pytest.raises(IllegalTransition) as refused:
                    await self.operate(operation, before.id)
                verb = VERBS.get(operation, operation)
                message = str(refused.value)
                assert message == f"cannot {verb} execution {before.id}: {control.reason}"
                assert control.reason is not None and control.reason in message
                assert refused.value.details["source"] is before.status
                stored = await self.h.get(before.id)
                assert (stored.status, stored.fencing_token, stored.variables) == (
                    before.status,
                    before.fencing_token,
                    before.variables,
                )
                continue
            assert control.reason is None
            after = await self.operate(operation, before.id)  # allowed: must not raise
            stored = await self.h.get(before.id)
            assert after.status is stored.status is target(before, operation)
            assert stored.fencing_token == before.fencing_token + 1
            if operation == "variables":
                assert stored.variables == {**before.variables, "note": "checked"}
        return said


def closed_port() -> int:
    """A local port nothing listens on: every call to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def world(make_harness: Callable[..., Any]) -> World:
    down = f"http://127.0.0.1:{closed_port()}"
    # a breaker that never opens: every execution calls, so each fails the same way
    never = BreakerConfig(count=[])
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=down, breaker=never)}))
    made = World(h)
    await made.publish()
    return made


ACTIVE = {S.RUNNING, S.WAITING_INPUT, S.WAITING_DELAY, S.RECOVERING, S.FALLBACK, S.DEGRADED}


def expected(status: ExecutionStatus) -> dict[str, str | None]:
    """What the table allows, written out (so that an agreeing pair of bugs still fails)."""
    state = f"it is {status.value}"
    retry_tail = "; only a recovering execution waiting for its next attempt can be retried"
    if status.terminal:
        final = f"{state} (it is final: start a new execution){retry_tail}"
        return dict.fromkeys(OPERATOR_OPERATIONS, state) | {"retry": final}
    return {
        "pause": state if status is S.PAUSED else None,
        "resume": None if status is S.PAUSED else state,
        "cancel": None,
        "advance": None,
        "retry": None if status is S.RECOVERING else state + retry_tail,
        "variables": None,
        "handback": state
        + (" (paused by an operator)" if status is S.PAUSED else "")
        + "; only a conversation a person holds can be handed back",
    }


NATURAL = [
    S.RUNNING,
    S.WAITING_INPUT,
    S.WAITING_DELAY,
    S.RECOVERING,
    S.PAUSED,
    S.COMPLETED,
    S.FAILED,
    S.CANCELLED,
    S.TIMEOUT,
]


@pytest.mark.parametrize("status", NATURAL, ids=lambda s: s.value)
async def test_agree_on_executions_the_engine_put_in_each_state(
    world: World, status: ExecutionStatus
) -> None:
    said = await world.agree(lambda: world.naturally(status))
    assert said == expected(status)


async def test_agree_on_a_conversation_a_person_holds(world: World) -> None:
    """Held by a person: handed back (not resumed nor advanced), cancelled, its variables
    changed; the operator and the controls agree on each."""
    said = await world.agree(lambda: world.settled("held"))
    held = "a person holds the conversation: hand it back (handback) to move it on"
    assert said == {
        "pause": "it is paused",
        "resume": held,
        "cancel": None,
        "advance": held,
        "retry": "it is paused; only a recovering execution waiting for its next attempt"
        " can be retried",
        "variables": None,
        "handback": None,
    }


@pytest.mark.parametrize("status", list(S), ids=lambda s: s.value)
async def test_agree_in_every_state(world: World, status: ExecutionStatus) -> None:
    said = await world.agree(lambda: world.placed(status))
    assert said == expected(status)


@pytest.mark.parametrize("status", [*sorted(ACTIVE), S.PAUSED], ids=lambda s: s.value)
async def test_agree_while_a_worker_holds_it(world: World, status: ExecutionStatus) -> None:
    """A live lease changes only retry's answer (a worker is running it right now)."""
    said = await world.agree(lambda: world.placed(status, lease="live"))
    want = expected(status)
    if status is S.RECOVERING:
        want["retry"] = "a worker is running it right now"
    assert said == want


async def test_agree_on_retry_once_the_lease_ran_out(world: World) -> None:
    said = await world.agree(lambda: world.placed(S.RECOVERING, lease="expired"))
    assert said == expected(S.RECOVERING)
    assert said["retry"] is None


@pytest.mark.parametrize("paused_from", [S.RUNNING, S.WAITING_DELAY, S.RECOVERING])
async def test_agree_whatever_a_pause_came_from(world: World, paused_from: ExecutionStatus) -> None:
    async def paused() -> Execution:
        ex = await world.placed(paused_from)
        return await world.operator.pause(ex.id)

    said = await world.agree(paused)
    assert said == expected(S.PAUSED)
