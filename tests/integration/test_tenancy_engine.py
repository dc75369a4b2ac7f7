"""The engine refuses, at run time, what publishing would have refused: another
institution's flow (by jump or fallback flow) and a dependency the flow's institution
may not call. The flows are stored directly, as a flow stored before a rule existed
would be: the engine must not trust the store to hold only checked flows."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest

from hostile_flows import lookup
from trilha.config import Config, DependencyConfig
from trilha.core.flow import NodeBase
from trilha.core.states import ExecutionStatus
from trilha.errors import AccessDenied, FlowValidationError
from trilha.processors.base import Jump, StepContext, StepResult
from trilha.processors.registry import Processors

# the root conftest's fixtures (its module name is shared with other folders')
Harness = Any
LocalServer = Any

SECRET = {
    "id": "beta/secret",
    "start": "leak",
    "nodes": [
        {"id": "leak", "type": "message", "text": "beta's secret text", "next": "deep"},
        {"id": "deep", "type": "message", "text": "beta's deep node", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}


async def _store(h: Harness, flow: dict[str, Any]) -> None:
    await h.store.publish_flow(flow["id"], flow, h.clock.now())


class GotoNode(NodeBase):
    """A third party's node type that enters another flow without declaring it in
    ``flow_references``: publishing cannot see where it goes, the engine must."""

    type: Literal["goto"]
    flow: str
    at: str | None = None


class GotoProcessor:
    node_type: ClassVar[str] = "goto"
    node_model: ClassVar[type[GotoNode]] = GotoNode
    effectful: ClassVar[bool] = False

    async def run(self, node: GotoNode, ctx: StepContext) -> StepResult:
        return StepResult(jump=Jump(node.flow, None, node.at))


async def test_a_jump_into_another_institution_is_refused_at_run_time(make_harness: Any) -> None:
    """A node entering beta's flow fails with kind forbidden and its fallback runs;
    beta's flow is never entered, at its start or at any node."""
    h: Harness = make_harness()
    h.engine.processors = Processors.from_entry_points(extra={"goto": GotoProcessor()})
    await _store(h, SECRET)
    await _store(
        h,
        {
            "id": "acme/main",
            "start": "go",
            "nodes": [
                {
                    "id": "go",
                    "type": "goto",
                    "flow": "beta/secret",
                    "at": "deep",
                    "fallback": {"next": "refused"},
                },
                {"id": "refused", "type": "end", "text": "not yours"},
            ],
        },
    )
    ex = await h.start("acme/main", institution_id="acme")
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.flow_id == "acme/main"
    assert h.channel.texts(ex.id) == ["not yours"]
    steps = await h.store.checkpoints(ex.id)
    assert steps[0].error is not None and steps[0].error["kind"] == "forbidden"
    trail = [r.message for r in await h.store.logs(ex.id)]
    assert "flow.jump_target_forbidden" in trail
    assert "execution.flow_changed" not in trail


async def test_a_stored_flow_naming_another_institution_does_not_run(harness: Harness) -> None:
    """A flow stored before the rule, naming beta's flow as its fallback flow, is
    checked again when loaded: it does not start."""
    await _store(harness, SECRET)
    await _store(
        harness,
        {
            "id": "acme/main",
            "start": "end",
            "settings": {"fallback": {"fallbackFlowId": "beta/secret"}},
            "nodes": [{"id": "end", "type": "end"}],
        },
    )
    with pytest.raises(FlowValidationError, match=r"settings\.fallback\.fallbackFlowId"):
        await harness.start("acme/main", institution_id="acme")


async def test_a_bare_name_enters_the_institutions_own_flow_before_the_shared_one(
    harness: Harness,
) -> None:
    """acme's 'menu' hides the shared 'menu'; beta's own 'menu' is never acme's."""
    for flow_id, text in (("menu", "shared menu"), ("acme/menu", "acme menu"), ("beta/menu", "b")):
        await _store(
            harness,
            {"id": flow_id, "start": "m", "nodes": [{"id": "m", "type": "end", "text": text}]},
        )
    main = {
        "id": "main",
        "start": "go",
        "nodes": [{"id": "go", "type": "jump", "flowId": "menu"}],
    }
    await _store(harness, main)
    for institution, expected in (("acme", "acme menu"), ("gamma", "shared menu")):
        ex = await harness.start("main", conversation=institution, institution_id=institution)
        await harness.settle(ex.id)
        assert harness.channel.texts(ex.id) == [expected]


async def test_a_dependency_not_allowed_is_never_called(
    make_harness: Any, http_server: LocalServer
) -> None:
    """A shared flow running for acme calls a dependency that serves only beta: the
    node fails forbidden, and no request (with beta's secret header) leaves."""
    http_server.route("GET", "/me", body={"ok": True})
    h: Harness = make_harness(
        Config(
            dependencies={
                "crm": DependencyConfig(
                    base_url=http_server.url,
                    headers={"Authorization": "Bearer beta-secret"},
                    institutions=["beta"],
                )
            }
        )
    )
    await _store(h, lookup())
    acme = await h.start("lookup", conversation="a", institution_id="acme")
    await h.settle(acme.id)
    assert h.channel.texts(acme.id) == ["refused"]
    assert http_server.requests == []
    beta = await h.start("lookup", conversation="b", institution_id="beta")
    await h.settle(beta.id)
    assert h.channel.texts(beta.id) == ["called"]
    assert http_server.requests[0]["headers"]["Authorization"] == "Bearer beta-secret"


async def test_an_execution_never_starts_on_another_institutions_flow(harness: Harness) -> None:
    """Engine.start refuses a flow stored for another institution."""
    await _store(harness, SECRET)
    with pytest.raises(AccessDenied):
        await harness.start("beta/secret", institution_id="acme")
