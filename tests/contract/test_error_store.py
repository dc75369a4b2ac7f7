"""Store contract: from an alert to its cause, through the protocol only.

Failed steps grouped by flow, node, dependency, error kind and HTTP status (``GET
/v1/errors``), with their counts, first and last time seen, an example and the
distinct inputs they failed on; the executions behind a group, each with its latest
matching failed step (the listing's error filters); executions by outcome, and how
many wait for each dependency.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from trilha.core.execution import Execution, checksum
from trilha.core.states import ExecutionStatus, Outcome
from trilha.store.base import ErrorGroup, ExecutionFilter, StepErrorMatch, Store

from .conftest import T0, Make

S = ExecutionStatus
F = ExecutionFilter
M = StepErrorMatch
CRM = "http://crm.test"


def http_error(code: str, status: int = 500) -> dict[str, Any]:
    """A failed CRM lookup's step error, as the engine writes it."""
    request = f"GET {CRM}/customers/{code}"
    return {
        "type": "NodeError",
        "message": f"{request} answered {status}",
        "code": "node_error",
        "details": {"status": status, "dependency": "crm", "request": request},
        "stack": None,
        "kind": "server" if status >= 500 else "client",
    }


CIRCUIT_OPEN = {
    "type": "DependencyUnavailable",
    "message": "dependency 'crm' is unavailable (circuit open)",
    "code": "dependency_unavailable",
    "details": {"dependency": "crm", "retry_at": T0 + 30},
    "stack": None,
    "kind": "dependency_unavailable",
}
BAD_EXPRESSION = {
    "type": "ExpressionError",
    "message": "unknown name 'x'",
    "code": "expression_error",
    "details": {},
    "stack": None,
    "kind": "validation",
}


async def fail(
    store: Store,
    make: Make,
    ex: Execution,
    error: dict[str, Any] | None,
    *,
    at: float,
    node: str = "lookup",
    node_type: str = "http",
    step_input: Any = None,
    ran_in: str | None = None,
) -> Execution:
    """Claim ``ex`` and commit one step of ``node`` at ``at`` whose checkpoint carries
    ``error`` (and ``step_input``); ``ran_in`` is the flow the step ran in, when the
    execution is in another one by the commit (a failure that sent it to a fallback
    flow). The execution stays claimable."""
    claimed = await make.claim(store, ex, now=at)
    before = claimed.execution
    commit = make.step(before, node=node, at=at, wake_at=at)
    state = commit.checkpoints[0].state
    if ran_in is not None:
        stepped = dataclasses.replace(commit.execution, flow_id=ran_in)
        state = stepped.state_payload()
    commit.checkpoints = [
        dataclasses.replace(
            c,
            node_id=node,
            node_type=node_type,
            error=error,
            input=step_input,
            state=state,
            checksum=checksum(state),
        )
        for c in commit.checkpoints
    ]
    await store.commit_step(commit, now=at)
    return await store.get_execution(ex.id)


def key(group: ErrorGroup) -> tuple[Any, ...]:
    return (group.flow_id, group.node_id, group.dependency, group.kind, group.status)


async def incident(store: Store, make: Make) -> dict[str, Execution]:
    """inst-1's lookup fails 500 for codes starting with 9 (one execution twice), then
    meets the open circuit; a bad expression in another flow; inst-2 fails alike."""
    made: dict[str, Execution] = {}

    async def new(name: str, **fields: Any) -> Execution:
        made[name] = await make.create(store, created_at=T0 + len(made), **fields)
        return made[name]

    a = await new("a")
    await fail(store, make, a, http_error("91234"), at=T0 + 10)
    await fail(store, make, a, CIRCUIT_OPEN, at=T0 + 11)
    b = await new("b")
    await fail(store, make, b, http_error("95555"), at=T0 + 12)
    await fail(store, make, b, http_error("95555"), at=T0 + 13)
    c = await new("c")
    await fail(store, make, c, http_error("90001"), at=T0 + 14)
    await fail(store, make, c, None, at=T0 + 15, node="greet", node_type="end")
    ok = await new("ok")
    await fail(store, make, ok, None, at=T0 + 16)
    billing = await new("billing", flow_id="billing")
    await fail(store, make, billing, BAD_EXPRESSION, at=T0 + 17, node="route", node_type="set")
    other = await new("other", institution="inst-2")
    await fail(store, make, other, http_error("97777"), at=T0 + 18)
    return made


async def test_errors_are_grouped_biggest_first(store: Store, make: Make) -> None:
    """A group per flow, node, dependency, kind and status, biggest first (the most
    recent first among equals), with its failed steps, the executions they touched, the
    first and last time seen and the newest failure as its example; an admin (no
    institution) sees every tenant's."""
    made = await incident(store, make)
    groups = await store.error_groups(T0)
    assert [key(g) for g in groups] == [
        ("onboarding", "lookup", "crm", "server", 500),
        ("billing", "route", None, "validation", None),
        ("onboarding", "lookup", "crm", "dependency_unavailable", None),
    ]
    server, billing, circuit = groups
    assert (server.count, server.executions) == (5, 4)
    assert (server.first_seen, server.last_seen) == (T0 + 10, T0 + 18)
    assert server.example_execution_id == made["other"].id
    assert server.node_type == "http"
    assert server.type == "NodeError"
    assert server.message == f"GET {CRM}/customers/97777 answered 500"
    assert (circuit.count, circuit.executions, circuit.example_execution_id) == (
        1,
        1,
        made["a"].id,
    )
    assert circuit.message == CIRCUIT_OPEN["message"]
    assert circuit.inputs == []
    assert (billing.count, billing.node_type, billing.type) == (1, "set", "ExpressionError")


async def test_inputs_are_distinct_newest_first_and_bounded(store: Store, make: Make) -> None:
    """A group's inputs are the distinct requests it failed on, newest first, at most
    ``inputs`` of them; a step without a request shows its own input (a reply)."""
    await incident(store, make)
    (server, *_) = await store.error_groups(T0, institution_id="inst-1")
    assert server.inputs == [f"GET {CRM}/customers/{code}" for code in ("90001", "95555", "91234")]
    (server, *_) = await store.error_groups(T0, institution_id="inst-1", inputs=2)
    assert server.inputs == [f"GET {CRM}/customers/{code}" for code in ("90001", "95555")]
    assert server.count == 4  # the bound is on the inputs shown, not on what is counted
    ask = await make.create(store, created_at=T0 + 50, flow_id="survey")
    reply = {"messageId": "m1", "text": "abc"}
    await fail(
        store,
        make,
        ask,
        BAD_EXPRESSION,
        at=T0 + 51,
        node="ask",
        node_type="question",
        step_input=reply,
    )
    (survey,) = await store.error_groups(T0 + 50)
    assert survey.inputs == [reply]


async def test_groups_are_scoped_by_time_tenant_flow_and_limit(store: Store, make: Make) -> None:
    """``since`` leaves older failures out, an institution sees its own only, a flow
    narrows to that flow, ``limit`` keeps the biggest groups."""
    await incident(store, make)
    inst2 = await store.error_groups(T0, institution_id="inst-2")
    assert [(key(g), g.count) for g in inst2] == [
        (("onboarding", "lookup", "crm", "server", 500), 1)
    ]
    assert inst2[0].inputs == [f"GET {CRM}/customers/97777"]
    late = await store.error_groups(T0 + 13, institution_id="inst-1")
    assert [(key(g), g.count, g.executions) for g in late] == [
        (("onboarding", "lookup", "crm", "server", 500), 2, 2),
        (("billing", "route", None, "validation", None), 1, 1),
    ]
    assert [key(g) for g in await store.error_groups(T0, flow_id="billing")] == [
        ("billing", "route", None, "validation", None)
    ]
    assert await store.error_groups(T0, flow_id="billing", institution_id="inst-2") == []
    assert [key(g) for g in await store.error_groups(T0, limit=1)] == [
        ("onboarding", "lookup", "crm", "server", 500)
    ]
    assert await store.error_groups(T0 + 19) == []
    assert await store.error_groups(T0, institution_id="nobody") == []


async def test_a_failure_counts_in_the_flow_it_ran_in(store: Store, make: Make) -> None:
    """A failure committed with the execution already in its fallback flow is grouped
    under the flow whose node failed."""
    ex = await make.create(store, flow_id="help-desk")
    await fail(store, make, ex, http_error("92222"), at=T0 + 1, ran_in="onboarding")
    (group,) = await store.error_groups(T0)
    assert key(group) == ("onboarding", "lookup", "crm", "server", 500)


async def test_a_failure_without_details_is_grouped_too(store: Store, make: Make) -> None:
    """An error with no details, kind or status (written by an older engine, or a
    configuration failure) is still a failed step, in a group of its own."""
    ex = await make.create(store)
    await fail(store, make, ex, {"type": "ValueError", "message": "boom"}, at=T0 + 1)
    (group,) = await store.error_groups(T0)
    assert key(group) == ("onboarding", "lookup", None, None, None)
    assert (group.type, group.message, group.count) == ("ValueError", "boom", 1)


async def test_failed_steps_are_the_latest_that_match(store: Store, make: Make) -> None:
    """Each execution's latest failed step that the match admits, with the input it
    failed on and the checkpoint's error; executions without one are left out."""
    made = await incident(store, make)
    ids = [ex.id for ex in made.values()]
    found = await store.failed_steps(ids, M())
    assert sorted(found) == sorted(made[n].id for n in ("a", "b", "c", "billing", "other"))
    a = found[made["a"].id]
    assert (a.node_id, a.at, a.error) == ("lookup", T0 + 11, CIRCUIT_OPEN)
    assert a.input is None
    server = await store.failed_steps(ids, M(node_id="lookup", kind="server", status=500))
    assert sorted(server) == sorted(made[n].id for n in ("a", "b", "c", "other"))
    a = server[made["a"].id]
    assert (a.at, a.input, a.error) == (
        T0 + 10,
        f"GET {CRM}/customers/91234",
        http_error("91234"),
    )
    b = server[made["b"].id]
    assert (b.at, b.seq) == (T0 + 13, 2)  # its second failed step, not its first
    assert sorted(await store.failed_steps(ids, M(since=T0 + 13, dependency="crm"))) == sorted(
        made[n].id for n in ("b", "c", "other")
    )
    assert await store.failed_steps(ids, M(status=404)) == {}
    assert await store.failed_steps([], M()) == {}


async def test_listing_by_failed_step(store: Store, make: Make) -> None:
    """The listing's error filters give exactly the executions with a matching failed
    step, newest first, within the institution and the other filters, in pages."""
    made = await incident(store, make)
    names = {ex.id: name for name, ex in made.items()}

    async def listed(match: StepErrorMatch, limit: int = 100, **where: Any) -> list[str]:
        found = await store.list_executions(limit=limit, where=F(failed_step=match, **where))
        return [names[ex.id] for ex in found]

    server = M(node_id="lookup", kind="server", status=500, dependency="crm")
    assert await listed(server) == ["other", "c", "b", "a"]
    assert await listed(server, institution_id="inst-1") == ["c", "b", "a"]
    assert await listed(server, institution_id="inst-2") == ["other"]
    assert await listed(M(since=T0 + 13), institution_id="inst-1") == ["billing", "c", "b"]
    assert await listed(M(kind="dependency_unavailable")) == ["a"]
    assert await listed(M(), flow_id="billing") == ["billing"]
    assert await listed(server, conversation_id=made["b"].conversation_id) == ["b"]
    assert await listed(server, institution_id="inst-1", status="running") == ["c", "b", "a"]
    assert await listed(M(status=404)) == []
    pages: list[str] = []
    before: tuple[float, str] | None = None
    while True:
        page = await store.list_executions(
            limit=2, where=F(failed_step=server, institution_id="inst-1"), before=before
        )
        pages += [names[ex.id] for ex in page]
        if len(page) < 2:
            break
        before = (page[-1].created_at, page[-1].id)
    assert pages == ["c", "b", "a"]


async def outcomes(store: Store, make: Make) -> dict[str, Execution]:
    """Ended executions of each outcome in two institutions, and two still running."""
    made: dict[str, Execution] = {}
    for i, (name, status, outcome, institution) in enumerate(
        [
            ("done", S.COMPLETED, Outcome.COMPLETED, "inst-1"),
            ("person", S.COMPLETED, Outcome.ESCALATED, "inst-1"),
            ("person2", S.COMPLETED, Outcome.ESCALATED, "inst-1"),
            ("broke", S.FAILED, Outcome.FAILED, "inst-1"),
            ("silent", S.TIMEOUT, Outcome.TIMEOUT, "inst-1"),
            ("other", S.COMPLETED, Outcome.ESCALATED, "inst-2"),
            ("running", S.RUNNING, None, "inst-1"),
        ]
    ):
        made[name] = await make.create(
            store, status=status, outcome=outcome, institution=institution, created_at=T0 + i
        )
    waiting = await make.create(store, created_at=T0 + 10)
    claimed = await make.claim(store, waiting)
    await store.commit_step(make.step(claimed.execution, status=S.RUNNING), now=T0 + 11)
    made["waiting"] = waiting
    return made


async def test_listing_and_counts_by_outcome(store: Store, make: Make) -> None:
    """``outcome`` lists the ended executions with that outcome, newest first, per
    institution too; counts per outcome leave out running executions."""
    made = await outcomes(store, make)
    names = {ex.id: name for name, ex in made.items()}

    async def listed(**where: Any) -> list[str]:
        return [names[ex.id] for ex in await store.list_executions(where=F(**where))]

    assert await listed(outcome="escalated") == ["other", "person2", "person"]
    assert await listed(outcome="escalated", institution_id="inst-1") == ["person2", "person"]
    assert await listed(outcome="escalated", status="completed", institution_id="inst-2") == [
        "other"
    ]
    assert await listed(outcome="timeout") == ["silent"]
    assert await listed(outcome="completed", institution_id="inst-2") == []
    page = await store.list_executions(limit=1, where=F(outcome="escalated"))
    rest = await store.list_executions(
        where=F(outcome="escalated"), before=(page[0].created_at, page[0].id)
    )
    assert [names[ex.id] for ex in page + rest] == ["other", "person2", "person"]
    assert await store.count_by_outcome() == {
        "completed": 1,
        "escalated": 3,
        "failed": 1,
        "timeout": 1,
    }
    assert await store.count_by_outcome("inst-1") == {
        "completed": 1,
        "escalated": 2,
        "failed": 1,
        "timeout": 1,
    }
    assert await store.count_by_outcome("inst-2") == {"escalated": 1}
    assert await store.count_by_outcome("nobody") == {}


async def test_waiting_for_dependencies_per_dependency(store: Store, make: Make) -> None:
    """Executions recovering while they wait for a dependency are counted by the
    dependency their error names, per institution too; other waits are not."""

    def waiting(name: str, **fields: Any) -> dict[str, Any]:
        return {
            "status": S.RECOVERING,
            "waiting_for": "dependency",
            "error": {"type": "DependencyUnavailable", "dependency": name},
            **fields,
        }

    await make.create(store, **waiting("crm"))
    await make.create(store, **waiting("crm"))
    await make.create(store, **waiting("nlp"))
    await make.create(store, **waiting("crm", institution="inst-2"))
    await make.create(store, status=S.RECOVERING, waiting_for="retry", error={"dependency": "crm"})
    await make.create(store, status=S.RECOVERING, waiting_for="dependency", error=None)
    assert await store.waiting_for_dependencies() == {"crm": 3, "nlp": 1}
    assert await store.waiting_for_dependencies("inst-1") == {"crm": 2, "nlp": 1}
    assert await store.waiting_for_dependencies("inst-2") == {"crm": 1}
    assert await store.waiting_for_dependencies("nobody") == {}
