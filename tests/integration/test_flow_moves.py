"""Moving waiting executions to a new flow version over the real engine and SQLite
store: they go on in the new version with the contact's next reply, the others stay
pinned to theirs, and what cannot move is skipped with its reason."""

from __future__ import annotations

from typing import Any

from trilha.core.flow import Flow, load_flow
from trilha.core.moving import reads_from
from trilha.core.states import ExecutionStatus
from trilha.engine.moving import Mover
from trilha.store.base import ExecutionFilter

S = ExecutionStatus
Harness = Any

ASK_V1 = {
    "id": "ask",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "hi", "next": "name"},
        {"id": "name", "type": "question", "text": "your name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "message", "text": "thanks {{name}}", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}
#: the question renamed, and a goodbye reading a variable v1 never had
ASK_V2 = {
    "id": "ask",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "hi", "next": "who"},
        {"id": "who", "type": "question", "text": "who are you?", "variable": "name",
         "next": "bye"},
        {"id": "bye", "type": "message", "text": "v2 thanks {{name}}{{plan}}", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}  # fmt: skip
MIX_V1 = {
    "id": "mix",
    "start": "q",
    "nodes": [
        {"id": "q", "type": "question", "text": "ready?", "variable": "a", "next": "nap"},
        {"id": "nap", "type": "delay", "seconds": 60, "next": "e"},
        {"id": "e", "type": "end", "text": "v1 done"},
    ],
}
#: the question is now a message, the delay is gone
MIX_V2 = {
    "id": "mix",
    "start": "q",
    "nodes": [
        {"id": "q", "type": "message", "text": "ready", "next": "e"},
        {"id": "e", "type": "end", "text": "v2 done"},
    ],
}
NAP_V1 = {
    "id": "nap",
    "start": "nap",
    "nodes": [
        {"id": "nap", "type": "delay", "seconds": 60, "next": "after"},
        {"id": "after", "type": "end", "text": "v1 after"},
    ],
}
NAP_V2 = {**NAP_V1, "nodes": [NAP_V1["nodes"][0], {**NAP_V1["nodes"][1], "text": "v2 after"}]}


async def _versions(h: Harness, v1: dict[str, Any], v2: dict[str, Any]) -> tuple[Flow, Flow]:
    await h.publish(v1)
    await h.publish(v2)
    return await h.engine.flow(v1["id"], 1), await h.engine.flow(v1["id"], 2)


async def _bot(h: Harness, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def test_moved_executions_go_on_in_the_new_version_and_the_others_stay(
    harness: Harness,
) -> None:
    """The dry run counts the waiting executions at their node with its counterpart and
    the variable v2 reads that they lack, and moves nothing; the move (filtered to one
    conversation) leaves an audit line; the moved one answers with v2's text at the next
    reply, the other with v1's."""
    h = harness
    await h.publish(ASK_V1)
    moved = await h.start("ask", "conv-1")
    pinned = await h.start("ask", "conv-2")
    await h.settle()
    old, new = await _versions(h, ASK_V1, ASK_V2)
    mover = Mover(h.store, h.engine)
    everyone = ExecutionFilter(institution_id="inst-1")

    plan = await mover.run(old, new, {"name": "who"}, everyone, dry_run=True, actor="test")
    assert plan.wire() | {"skipped": []} == {
        "dryRun": True,
        "fromVersion": 1,
        "toVersion": 2,
        "total": 2,
        "movable": 2,
        "nodes": [
            {"nodeId": "name", "count": 2, "counterpart": "who", "missingVariables": ["plan"]}
        ],
        "skipped": [],
        "skippedTotal": 0,
    }
    assert {(await h.get(x.id)).flow_version for x in (moved, pinned)} == {1}
    first = await mover.run(old, new, {"name": "who"}, everyone, dry_run=True, actor="t", limit=1)
    assert first.total == 1 and first.next_position is not None
    rest = await mover.run(
        old, new, {"name": "who"}, everyone, dry_run=True, actor="t", after=first.next_position
    )
    assert rest.total == 1 and rest.next_position is None  # one page each, none twice

    one = ExecutionFilter(institution_id="inst-1", conversation_id="conv-1")
    done = await mover.run(
        old, new, {"name": "who"}, one, dry_run=False, actor="key:k1", reason="v2 fix"
    )
    assert (done.moved, done.skipped_total) == (1, 0)
    now = await h.get(moved.id)
    assert (now.flow_version, now.current_node_id, now.status) == (2, "who", S.WAITING_INPUT)
    (line,) = [x for x in await h.store.logs(moved.id) if x.message == "operator.migrated"]
    assert line.context | {"reason": "v2 fix"} == line.context
    assert {k: line.context[k] for k in ("fromVersion", "toVersion", "fromNode", "toNode")} == {
        "fromVersion": 1,
        "toVersion": 2,
        "fromNode": "name",
        "toNode": "who",
    }
    assert line.context["actor"] == "key:k1"

    again = await mover.run(old, new, {"name": "who"}, one, dry_run=False, actor="key:k1")
    assert (again.total, again.moved) == (0, 0)  # moved once: no longer of v1

    assert (await h.reply(moved.id, "Ana")).status is S.COMPLETED
    assert (await _bot(h, moved.id))[-1] == "v2 thanks Ana"
    assert (await h.reply(pinned.id, "Bia")).flow_version == 1
    assert (await _bot(h, pinned.id))[-1] == "thanks Bia"


async def test_what_cannot_move_is_skipped_with_its_reason(harness: Harness) -> None:
    """A question whose counterpart is a message, a delay without a counterpart and a
    running execution are skipped, each with why, and stay on v1."""
    h = harness
    await h.publish(MIX_V1)
    asking = await h.start("mix", "conv-q")
    napping = await h.start("mix", "conv-n")
    await h.settle()
    await h.reply(napping.id, "yes")
    running = await h.start("mix", "conv-r")  # no worker has taken it yet
    old, new = await _versions(h, MIX_V1, MIX_V2)
    assert (await h.get(napping.id)).status is S.WAITING_DELAY

    done = await Mover(h.store, h.engine).run(
        old, new, {}, ExecutionFilter(institution_id="inst-1"), dry_run=False, actor="test"
    )
    reasons = dict(done.skipped)
    assert (done.total, done.moved, done.skipped_total) == (3, 0, 3)
    assert "(a question), whose counterpart 'q' is a message" in reasons[asking.id]
    assert "node 'nap', which has no counterpart in v2" in reasons[napping.id]
    assert "it is running, not waiting" in reasons[running.id]
    assert {n.node_id: n.counterpart for n in done.nodes.values()} == {"nap": None, "q": "q"}
    for ex in (asking, napping, running):
        assert (await h.get(ex.id)).flow_version == 1


async def test_a_moved_delay_keeps_its_due_time_and_ends_in_the_new_version(
    harness: Harness,
) -> None:
    """A waiting delay moves with its due time; when it fires, v2 goes on."""
    h = harness
    await h.publish(NAP_V1)
    ex = await h.start("nap", "conv-d")
    await h.settle()
    due = (await h.get(ex.id)).due_at
    old, new = await _versions(h, NAP_V1, NAP_V2)
    done = await Mover(h.store, h.engine).run(
        old, new, {}, ExecutionFilter(), dry_run=False, actor="test", limit=1
    )
    assert done.moved == 1 and done.next_position is None
    moved = await h.get(ex.id)
    assert (moved.flow_version, moved.status, moved.due_at) == (2, S.WAITING_DELAY, due)
    h.clock.advance(61)
    await h.settle()
    assert (await h.get(ex.id)).status is S.COMPLETED
    assert (await _bot(h, ex.id))[-1] == "v2 after"


def test_reads_from_follows_the_graph_and_leaves_out_what_it_sets() -> None:
    """The variables read downstream of a node, less those set on the way."""
    flow = load_flow(ASK_V2)
    assert reads_from(flow, "who") == ["plan"]
    assert reads_from(flow, "bye") == ["name", "plan"]
    assert reads_from(flow, "done") == []
