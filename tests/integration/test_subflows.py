"""Sub-flows that return, through the engine over a real SQLite store: a ``subflow``
node runs another flow in the same execution (one transcript, one trail) on a call
stack, the called flow sees only its input, hands back its ``output`` and the caller
goes on at the branch for how it ended; depth, tenancy and the state bound hold, and
the operator controls act on the running frame."""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar, Literal

import pytest

from trilha.config import Config, DependencyConfig, EngineConfig
from trilha.core.execution import verified_state
from trilha.core.flow import NodeBase, parse_flow
from trilha.core.frames import frames
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.operator import Operator
from trilha.errors import FlowError
from trilha.processors.base import Call, StepContext, StepResult
from trilha.processors.registry import Processors

Harness = Any
S = ExecutionStatus

#: the called flow: asks for the house number, hands back the whole address
ADDRESS: dict[str, Any] = {
    "id": "address",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Number at {{cep}}? (sees secret=[{{secret}}])",
            "variable": "number",
            "next": "keep",
        },
        {
            "id": "keep",
            "type": "set",
            "variables": {"result": {"cep": "{{cep}}", "number": "{{number}}"}},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "Address noted."},
    ],
}


def caller(
    callee: str = "address",
    *,
    branches: dict[str, str] | None = None,
    next_node: str | None = "ok",
    flow_id: str = "main",
    **extra: Any,
) -> dict[str, Any]:
    """A caller with a secret of its own, calling ``callee`` with a CEP."""
    call: dict[str, Any] = {
        "id": "call",
        "type": "subflow",
        "flowId": callee,
        "input": {"cep": "{{cep0}}"},
        "output": {"address": "result"},
        "branches": branches or {},
        **extra,
    }
    if next_node is not None:
        call["next"] = next_node
    return {
        "id": flow_id,
        "start": "hello",
        "nodes": [
            {
                "id": "hello",
                "type": "set",
                "variables": {"secret": "caller-only", "cep0": "01001-000"},
                "next": "call",
            },
            call,
            {
                "id": "ok",
                "type": "end",
                "text": "Got {{address.cep}} n. {{address.number}}; secret {{secret}}",
            },
            {"id": "esc", "type": "end", "text": "escalated branch"},
            {"id": "bad", "type": "end", "text": "failed branch"},
            {"id": "late", "type": "end", "text": "timeout branch"},
            {"id": "wrong", "type": "end", "text": "invalid branch"},
        ],
    }


async def trail(h: Harness, execution_id: str) -> list[Any]:
    return list(await h.store.logs(execution_id))


async def test_a_sub_flow_returns_its_output_to_the_caller(harness: Harness) -> None:
    """The callee runs with its input alone (the caller's secret is not there), the
    caller waits on the stack with its variables, and gets ``result`` back as
    ``address``; one transcript, one trail with the call and the return."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller())
    ex = await h.start("main")
    await h.settle(ex.id)

    waiting = await h.get(ex.id)
    assert waiting.status is S.WAITING_INPUT
    assert (waiting.flow_id, waiting.current_node_id) == ("address", "ask")
    assert waiting.variables == {"cep": "01001-000"}
    (frame,) = frames(waiting.stack)
    assert (frame.flow_id, frame.version, frame.node_id) == ("main", 1, "call")
    assert frame.variables == {"secret": "caller-only", "cep0": "01001-000"}
    assert h.channel.texts(ex.id) == ["Number at 01001-000? (sees secret=[])"]

    done = await h.reply(ex.id, "42")
    assert (done.status, done.outcome) == (S.COMPLETED, Outcome.COMPLETED)
    assert done.flow_id == "main" and done.stack == []
    assert done.variables["address"] == {"cep": "01001-000", "number": "42"}
    assert "number" not in done.variables and "cep" not in done.variables
    assert h.channel.texts(ex.id)[1:] == [
        "Address noted.",
        "Got 01001-000 n. 42; secret caller-only",
    ]
    changes = [r.context for r in await trail(h, ex.id) if r.message == "execution.flow_changed"]
    assert [(c["call"], c["flowId"], c["depth"]) for c in changes] == [
        ("enter", "address", 1),
        ("return", "main", 0),
    ]
    assert changes[1]["outcome"] == "completed"


async def test_every_checkpoint_inside_the_sub_flow_holds_the_stack(harness: Harness) -> None:
    """The stack is part of the checkpointed state (and of its checksum): the steps in
    the sub-flow carry the caller's frame, the ones after the return do not."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller())
    ex = await h.start("main")
    await h.settle(ex.id)
    await h.reply(ex.id, "7")
    depths = []
    for cp in await h.store.checkpoints(ex.id):
        state = verified_state(cp)
        assert state is not None, cp.seq
        depths.append((cp.node_id, len(state.get("stack", []))))
    # the call step is the first one inside; the end node's step is the return
    assert depths == [("hello", 0), ("call", 1), ("ask", 1), ("ask", 1), ("keep", 1),
                      ("bye", 0), ("call", 0), ("ok", 0)]  # fmt: skip


ESCALATES = {
    "id": "desk",
    "start": "h",
    "nodes": [{"id": "h", "type": "handoff", "queue": "cep-desk", "text": "A person helps."}],
}
FAILS = {
    "id": "broken",
    "start": "go",
    "nodes": [{"id": "go", "type": "jump", "flowId": "nowhere-at-all"}],
}
INVALID = {
    "id": "strict",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Digits?",
            "variable": "d",
            "validate": {"kind": "number"},
            "maxInvalid": 0,
            "next": "bye",
        },
        {"id": "bye", "type": "end"},
    ],
}
ALL_BRANCHES = {
    "completed": "ok",
    "escalated": "esc",
    "failed": "bad",
    "timeout": "late",
    "invalid_input": "wrong",
}


@pytest.mark.parametrize(
    ("callee", "reply", "said"),
    [
        (ESCALATES, None, ["A person helps.", "escalated branch"]),
        (FAILS, None, ["failed branch"]),
        (INVALID, "abc", ["Digits?", "invalid branch"]),
    ],
    ids=["escalated", "failed", "invalid_input"],
)
async def test_the_caller_goes_on_at_the_branch_for_how_it_ended(
    harness: Harness, callee: dict[str, Any], reply: str | None, said: list[str]
) -> None:
    """A handoff, a failure or too many invalid answers inside the sub-flow do not end
    the execution: the caller takes its branch, and completes. A handoff taken by the
    caller does not reach the desk."""
    h = harness
    await h.publish(callee)
    await h.publish(caller(str(callee["id"]), branches=ALL_BRANCHES))
    ex = await h.start("main")
    await h.settle(ex.id)
    if reply is not None:
        await h.reply(ex.id, reply)
    done = await h.get(ex.id)
    assert (done.status, done.outcome, done.flow_id) == (S.COMPLETED, Outcome.COMPLETED, "main")
    assert h.channel.texts(ex.id) == said
    assert await h.store.handoffs(ex.id) == []


async def test_a_timeout_in_the_sub_flow_takes_the_callers_timeout_branch(
    harness: Harness,
) -> None:
    """No reply in time to the sub-flow's question: the caller's ``timeout`` branch."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller(branches=ALL_BRANCHES))
    ex = await h.start("main")
    await h.settle(ex.id)
    h.clock.advance(86_400 + 1)
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert (done.status, done.outcome, done.flow_id) == (S.COMPLETED, Outcome.COMPLETED, "main")
    assert h.channel.texts(ex.id)[-1] == "timeout branch"
    assert done.variables["address"] is None  # the sub-flow set no result


async def test_a_timeout_without_a_branch_times_the_whole_execution_out(
    harness: Harness,
) -> None:
    """``next`` is not taken for a timeout (the contact is gone): the execution ends in
    ``timeout`` with the timeout message, as outside a sub-flow."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller())
    ex = await h.start("main")
    await h.settle(ex.id)
    h.clock.advance(86_400 + 1)
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert (done.status, done.outcome) == (S.TIMEOUT, Outcome.TIMEOUT)
    assert "taking too long" in h.channel.texts(ex.id)[-1]


async def test_a_missing_branch_falls_to_next(harness: Harness) -> None:
    """A handoff inside, with no ``escalated`` branch: the caller's ``next``."""
    h = harness
    await h.publish(ESCALATES)
    await h.publish(caller("desk", next_node="esc"))
    ex = await h.start("main")
    await h.settle(ex.id)
    assert h.channel.texts(ex.id) == ["A person helps.", "escalated branch"]
    assert (await h.get(ex.id)).outcome is Outcome.COMPLETED


async def test_an_escalation_nobody_takes_reaches_the_desk(harness: Harness) -> None:
    """No branch and no ``next``: the escalation goes on up and ends the execution
    ``escalated``, with the sub-flow's queue on the handoff."""
    h = harness
    await h.publish(ESCALATES)
    await h.publish(caller("desk", next_node=None))
    ex = await h.start("main")
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert (done.status, done.outcome) == (S.COMPLETED, Outcome.ESCALATED)
    assert [x.queue for x in await h.store.handoffs(ex.id)] == ["cep-desk"]


async def test_a_failure_nobody_takes_fails_the_calling_node(harness: Harness) -> None:
    """No ``failed`` branch and no ``next``: the subflow node fails (SubflowFailed) and
    takes its own fallback."""
    h = harness
    await h.publish(FAILS)
    await h.publish(caller("broken", next_node=None, fallback={"next": "bad"}))
    ex = await h.start("main")
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert (done.status, done.outcome) == (S.COMPLETED, Outcome.COMPLETED)
    assert h.channel.texts(ex.id) == ["failed branch"]
    failed = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert failed[-1].node_id == "call"
    assert failed[-1].error is not None and failed[-1].error["type"] == "SubflowFailed"
    assert "nowhere-at-all" in failed[-1].error["message"]


NESTED_B = {
    "id": "b",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "b asks {{x}}", "variable": "y", "next": "r"},
        {"id": "r", "type": "set", "expressions": {"result": "y + '!'"}},
    ],
}
NESTED_A = {
    "id": "a",
    "start": "call_b",
    "nodes": [
        {
            "id": "call_b",
            "type": "subflow",
            "flowId": "b",
            "input": {"x": "{{x}}-a"},
            "output": {"result": "result"},
            "next": "r",
        },
        {"id": "r", "type": "set", "variables": {"result": "a got {{result}}"}},
    ],
}


async def test_nested_calls_return_in_order(harness: Harness) -> None:
    """main -> a -> b: while b waits the stack holds main and a; b returns to a,
    a to main, each handing back its result."""
    h = harness
    await h.publish(NESTED_B)
    await h.publish(NESTED_A)
    await h.publish(
        {
            "id": "main",
            "start": "call_a",
            "nodes": [
                {
                    "id": "call_a",
                    "type": "subflow",
                    "flowId": "a",
                    "input": {"x": "top"},
                    "output": {"final": "result"},
                    "next": "bye",
                },
                {"id": "bye", "type": "end", "text": "{{final}}"},
            ],
        }
    )
    ex = await h.start("main")
    await h.settle(ex.id)
    waiting = await h.get(ex.id)
    assert [(f.flow_id, f.node_id) for f in frames(waiting.stack)] == [
        ("main", "call_a"),
        ("a", "call_b"),
    ]
    assert waiting.variables == {"x": "top-a"}
    done = await h.reply(ex.id, "yes")
    assert done.status is S.COMPLETED and done.stack == []
    assert h.channel.texts(ex.id) == ["b asks top-a", "a got yes!"]


RECURSIVE = {
    "id": "deep",
    "start": "count",
    "nodes": [
        {"id": "count", "type": "set", "expressions": {"n": "n + 1"}, "next": "again"},
        {
            "id": "again",
            "type": "subflow",
            "flowId": "deep",
            "input": {"n": "{{n}}"},
            "output": {"reached": "reached"},
            "fallback": {"next": "bottom"},
            "next": "up",
        },
        {"id": "bottom", "type": "set", "variables": {"reached": "{{n}}"}, "next": "up"},
        {"id": "up", "type": "end"},
    ],
}


async def test_a_call_past_the_depth_limit_fails_the_node(make_harness: Any) -> None:
    """A flow calling itself: at ``max_call_depth`` nested sub-flows the next call fails
    with kind ``limit`` and its fallback runs; each frame then returns in turn."""
    h: Harness = make_harness(Config(engine=EngineConfig(max_call_depth=3)))
    await h.publish(RECURSIVE)
    ex = await h.start("deep", variables={"n": 0})
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert (done.status, done.outcome) == (S.COMPLETED, Outcome.COMPLETED)
    assert done.stack == [] and done.variables["reached"] == 4
    refused = [r for r in await trail(h, ex.id) if r.message == "subflow.refused"]
    assert len(refused) == 1 and "max_call_depth" in refused[0].context["error"]
    errors = [c.error for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert [e["kind"] for e in errors] == ["limit"]


def test_a_flow_calling_itself_is_a_warning_at_publish() -> None:
    """The cycle is seen when the flow is checked: a warning, not an error."""
    flow, problems = parse_flow(RECURSIVE)
    assert flow is not None
    (cycle,) = [p for p in problems if "calls itself" in p.message]
    assert cycle.severity == "warning" and cycle.path == "nodes[1].flowId"


def test_calling_another_institutions_flow_is_refused_at_publish() -> None:
    """acme's flow naming beta's is an error naming the field."""
    flow, problems = parse_flow(caller("beta/address", flow_id="acme/main"))
    assert flow is None
    assert any(p.path == "nodes[1].flowId" and "another institution" in p.message for p in problems)


class CallNode(NodeBase):
    """A third party's node that calls a flow publishing cannot see."""

    type: Literal["call_any"]
    flow: str


class CallAnyProcessor:
    node_type: ClassVar[str] = "call_any"
    node_model: ClassVar[type[CallNode]] = CallNode
    effectful: ClassVar[bool] = False

    async def run(self, node: CallNode, ctx: StepContext) -> StepResult:
        return StepResult(call=Call(node.flow, output={"got": "result"}))


async def test_calling_another_institutions_flow_is_refused_at_run_time(
    make_harness: Any,
) -> None:
    """The engine resolves a call like a jump: beta's flow is never entered, the node
    fails with kind forbidden and its fallback runs."""
    h: Harness = make_harness()
    h.engine.processors = Processors.from_entry_points(extra={"call_any": CallAnyProcessor()})
    secret = {"id": "beta/secret", "start": "s", "nodes": [{"id": "s", "type": "end", "text": "B"}]}
    await h.store.publish_flow("beta/secret", secret, h.clock.now())
    await h.store.publish_flow(
        "acme/main",
        {
            "id": "acme/main",
            "start": "go",
            "nodes": [
                {"id": "go", "type": "call_any", "flow": "beta/secret", "fallback": {"next": "no"}},
                {"id": "no", "type": "end", "text": "not yours"},
            ],
        },
        h.clock.now(),
    )
    ex = await h.start("acme/main", institution_id="acme")
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.flow_id == "acme/main"
    assert h.channel.texts(ex.id) == ["not yours"]
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert step.error is not None and step.error["kind"] == "forbidden"
    assert "execution.flow_changed" not in [r.message for r in await trail(h, ex.id)]


async def test_a_bare_name_calls_the_institutions_own_flow_else_the_shared_one(
    harness: Harness,
) -> None:
    """A shared caller running for beta calls beta's 'address' if it has one, else the
    shared one; acme's is never beta's."""
    h = harness
    for stored, text in (("acme/address", "acme's"), ("address", "shared")):
        flow = {"id": stored, "start": "e", "nodes": [{"id": "e", "type": "end", "text": text}]}
        await h.store.publish_flow(stored, flow, h.clock.now())
    await h.publish(caller())
    for institution, said in (("acme", "acme's"), ("beta", "shared")):
        ex = await h.start("main", conversation=institution, institution_id=institution)
        await h.settle(ex.id)
        assert h.channel.texts(ex.id)[0] == said


async def test_a_deep_stack_cannot_bypass_the_state_bound(make_harness: Any) -> None:
    """The callers' variables count against ``max_state_bytes``: a value that would fit
    in a sub-flow's own variables fails with kind limit when its callers hold the rest."""
    h: Harness = make_harness(Config(engine=EngineConfig(max_state_bytes=4_000)))
    fill = {
        "id": "fill",
        "start": "big",
        "nodes": [
            {
                "id": "big",
                "type": "set",
                "variables": {"result": "y" * 2_500},
                "fallback": {"next": "small"},
                "next": "bye",
            },
            {"id": "small", "type": "set", "variables": {"result": "too big"}, "next": "bye"},
            {"id": "bye", "type": "end"},
        ],
    }
    await h.publish(fill)
    await h.publish(caller("fill"))
    ex = await h.start("main", variables={"ballast": "x" * 2_500})
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED
    assert done.variables["address"] == "too big"
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert step.node_id == "big" and step.error is not None
    assert step.error["kind"] == "limit" and "callers'" in step.error["message"]

    # alone, the same sub-flow's value fits
    alone = await h.start("fill", conversation="alone")
    await h.settle(alone.id)
    assert len((await h.get(alone.id)).variables["result"]) == 2_500


async def test_a_call_whose_input_passes_the_bounds_fails_the_node(make_harness: Any) -> None:
    """The input is bounded by ``max_value_bytes`` (each value) before the call."""
    h: Harness = make_harness(Config(engine=EngineConfig(max_value_bytes=1_000)))
    await h.publish(ADDRESS)
    flow = caller(fallback={"next": "bad"})
    flow["nodes"][1]["input"] = {"cep": "{{ballast}}"}
    await h.publish(flow)
    ex = await h.start("main", variables={"ballast": "z" * 1_100})
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.stack == []
    assert h.channel.texts(ex.id) == ["failed branch"]
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert step.node_id == "call" and step.error is not None and step.error["kind"] == "limit"


JUMPS = {
    "id": "hop",
    "start": "go",
    "nodes": [{"id": "go", "type": "jump", "flowId": "landing"}],
}
LANDING = {
    "id": "landing",
    "start": "s",
    "nodes": [
        {"id": "s", "type": "set", "variables": {"result": {"cep": "{{cep}}", "number": "9"}}},
    ],
}


async def test_a_jump_inside_a_sub_flow_replaces_its_frames_flow(harness: Harness) -> None:
    """``jump`` stays one-way: it moves the sub-flow's frame to another flow (with the
    same variables), and that flow's end returns to the caller."""
    h = harness
    await h.publish(JUMPS)
    await h.publish(LANDING)
    await h.publish(caller("hop"))
    ex = await h.start("main")
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.flow_id == "main"
    assert h.channel.texts(ex.id) == ["Got 01001-000 n. 9; secret caller-only"]
    changes = [
        (r.context.get("call"), r.context["flowId"])
        for r in await trail(h, ex.id)
        if r.message == "execution.flow_changed"
    ]
    assert changes == [("enter", "hop"), (None, "landing"), ("return", "main")]


async def test_the_sub_flow_is_pinned_to_its_version_at_call_time(harness: Harness) -> None:
    """A new version published while the sub-flow waits does not change the running
    one; the next call takes the new version."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller())
    ex = await h.start("main")
    await h.settle(ex.id)
    changed = {**ADDRESS, "nodes": [dict(n) for n in ADDRESS["nodes"]]}
    changed["nodes"][2] = {"id": "bye", "type": "end", "text": "Version two."}
    await h.publish(changed)
    done = await h.reply(ex.id, "1")
    assert "Address noted." in h.channel.texts(ex.id)
    assert done.status is S.COMPLETED
    again = await h.start("main", conversation="again")
    await h.settle(again.id)
    assert (await h.get(again.id)).flow_version == 2
    await h.reply(again.id, "2")
    assert "Version two." in h.channel.texts(again.id)


async def test_operator_controls_act_on_the_running_frame(harness: Harness) -> None:
    """Pause and resume keep the stack; advance names a node of the running frame's
    flow (a caller's node id is refused), and the sub-flow still returns."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller())
    operator = Operator(h.store, h.engine)
    ex = await h.start("main")
    await h.settle(ex.id)

    paused = await operator.pause(ex.id, reason="look")
    assert paused.status is S.PAUSED and len(paused.stack) == 1
    resumed = await operator.resume(ex.id)
    assert resumed.status is S.WAITING_INPUT and resumed.flow_id == "address"

    with pytest.raises(FlowError, match="no node 'ok' in flow 'address'"):
        await operator.advance(ex.id, "ok")
    await operator.set_variables(ex.id, {"number": "77", "result": {"cep": "x", "number": "77"}})
    await operator.advance(ex.id, "bye")
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.flow_id == "main"
    assert h.channel.texts(ex.id)[-1] == "Got x n. 77; secret caller-only"


async def test_a_corrupted_row_inside_a_sub_flow_is_restored_with_its_stack(
    harness: Harness,
) -> None:
    """The row is damaged while the sub-flow waits: the engine restores the last valid
    checkpoint, stack included, and the reply still returns to the caller."""
    h = harness
    await h.publish(ADDRESS)
    await h.publish(caller())
    ex = await h.start("main")
    await h.settle(ex.id)
    assert await h.store.tamper(ex.id, "variables", "{not json")
    done = await h.reply(ex.id, "5")
    assert done.status is S.COMPLETED and done.stack == []
    assert done.variables["address"] == {"cep": "01001-000", "number": "5"}
    assert done.variables["secret"] == "caller-only"
    corrupted = [r for r in await trail(h, ex.id) if r.message == "execution.corrupted"]
    assert corrupted and corrupted[-1].context["flowId"] == "address"


async def test_a_corrupted_row_with_no_valid_checkpoint_restarts_the_first_flow(
    harness: Harness,
) -> None:
    """With every checkpoint damaged too, the execution starts again from the flow it
    started in (read from the row's stack), not from the sub-flow's start."""
    h = harness
    again_said = "Got 01001-000 n. 5; secret caller-only"
    await h.publish(ADDRESS)
    await h.publish(caller())
    ex = await h.start("main")
    await h.settle(ex.id)
    with sqlite3.connect(h.store.path) as conn:
        conn.execute("UPDATE checkpoints SET checksum = 'bad' WHERE execution_id = ?", (ex.id,))
        conn.execute("UPDATE executions SET checksum = 'bad' WHERE id = ?", (ex.id,))
    await h.engine.send(ex.id, "5")  # wakes it: the reply is kept, the row restored
    await h.settle(ex.id)
    again = await h.get(ex.id)
    # main ran again from its start: the call asked again, and the kept reply answered
    assert (again.status, again.flow_id, again.stack) == (S.COMPLETED, "main", [])
    assert again.variables["address"] == {"cep": "01001-000", "number": "5"}
    asked = "Number at 01001-000? (sees secret=[])"
    assert h.channel.texts(ex.id) == [asked, asked, "Address noted.", again_said]
    history = [t.reason for t in await h.store.transitions(ex.id)]
    assert "no valid checkpoint: restarted from the flow's start" in history


async def test_retry_reaches_a_node_backing_off_inside_a_sub_flow(
    make_harness: Any, http_server: Any
) -> None:
    """A sub-flow's http node waits to retry (recovering): the operator's retry runs it
    now, and the sub-flow returns its data to the caller."""
    http_server.route("GET", "/data", body={"value": 7})
    http_server.fail_first("GET", "/data", 1)
    h: Harness = make_harness(
        Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)})
    )
    await h.publish(
        {
            "id": "fetch",
            "start": "get",
            "settings": {"fallback": {"timeoutSeconds": 86_400}},
            "nodes": [
                {
                    "id": "get",
                    "type": "http",
                    "dependency": "svc",
                    "url": "/data",
                    "saveAs": "result",
                    "retry": {"maxAttempts": 3, "initialIntervalSeconds": 600, "jitter": False},
                },
            ],
        }
    )
    flow = caller("fetch", next_node="got")
    flow["nodes"].append({"id": "got", "type": "end", "text": "{{address.value}}"})
    await h.publish(flow)
    ex = await h.start("main")
    await h.settle(ex.id)
    waiting = await h.get(ex.id)
    assert (waiting.status, waiting.flow_id, len(waiting.stack)) == (S.RECOVERING, "fetch", 1)

    retried = await Operator(h.store, h.engine).retry(ex.id, reason="it is back")
    assert retried.status is S.RUNNING and len(retried.stack) == 1
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.flow_id == "main"
    assert h.channel.texts(ex.id) == ["7"]
    assert http_server.count("GET", "/data") == 2


async def test_a_timeout_goes_up_to_the_nearest_caller_with_a_branch(harness: Harness) -> None:
    """main (timeout branch) -> a (none) -> b waits: no reply in time comes back through
    a to main's branch."""
    h = harness
    await h.publish(NESTED_B)
    await h.publish(NESTED_A)
    await h.publish(
        {
            "id": "main",
            "start": "call_a",
            "nodes": [
                {
                    "id": "call_a",
                    "type": "subflow",
                    "flowId": "a",
                    "input": {"x": "top"},
                    "branches": {"timeout": "late"},
                    "next": "bye",
                },
                {"id": "late", "type": "end", "text": "you went quiet"},
                {"id": "bye", "type": "end", "text": "bye"},
            ],
        }
    )
    ex = await h.start("main")
    await h.settle(ex.id)
    assert len((await h.get(ex.id)).stack) == 2
    h.clock.advance(86_400 + 1)
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert (done.status, done.outcome, done.stack) == (S.COMPLETED, Outcome.COMPLETED, [])
    assert h.channel.texts(ex.id) == ["b asks top-a", "you went quiet"]


async def test_invalid_input_nobody_takes_ends_the_execution_so(harness: Harness) -> None:
    """Too many invalid answers in the sub-flow, no branch, no next: the execution ends
    with outcome invalid_input, as the question would have ended it."""
    h = harness
    await h.publish(INVALID)
    await h.publish(caller("strict", next_node=None))
    ex = await h.start("main")
    await h.settle(ex.id)
    done = await h.reply(ex.id, "abc")
    assert (done.status, done.outcome, done.flow_id) == (
        S.COMPLETED,
        Outcome.INVALID_INPUT,
        "main",
    )
