"""Ownership rules of flows and dependencies (DESIGN §9), without a store."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.core.flow import parse_flow
from trilha.core.tenancy import (
    check_entry,
    dependency_denial,
    dependency_problems,
    flow_candidates,
    reference_denial,
    split_id,
    stored_id,
)
from trilha.errors import AccessDenied


def _flow(flow_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": flow_id,
        "start": "go",
        "nodes": [{"id": "go", "type": "jump", "flowId": "menu"}],
        **extra,
    }


def test_stored_ids_carry_their_owner() -> None:
    """An institution's flow is stored as OWNER/NAME, a shared one under its bare name."""
    assert stored_id("acme", "menu") == "acme/menu"
    assert stored_id(None, "menu") == "menu"
    assert split_id("acme/menu") == ("acme", "menu")
    assert split_id("menu") == (None, "menu")


@pytest.mark.parametrize(
    ("flow_id", "reference", "refused"),
    [
        ("acme/main", "menu", False),
        ("acme/main", "acme/menu", False),
        ("acme/main", "beta/secret", True),
        ("main", "menu", False),
        ("main", "acme/menu", True),
    ],
)
def test_a_flow_names_only_its_owners_flows_and_shared_ones(
    flow_id: str, reference: str, refused: bool
) -> None:
    """Another institution's flow, or any owner's from a shared flow, is refused by id."""
    assert (reference_denial(flow_id, reference) is not None) is refused


def test_a_bare_name_means_the_institutions_own_flow_first() -> None:
    """A bare name tries the running institution's flow, then the shared one."""
    assert flow_candidates("acme", "menu") == ["acme/menu", "menu"]
    assert flow_candidates("acme", "acme/menu") == ["acme/menu"]
    assert flow_candidates(None, "menu") == ["menu"]


def test_another_owners_flow_is_never_a_candidate() -> None:
    """Naming beta's flow from an execution of acme raises, with kind forbidden."""
    with pytest.raises(AccessDenied) as caught:
        flow_candidates("acme", "beta/secret")
    assert caught.value.details["kind"] == "forbidden"
    with pytest.raises(AccessDenied):
        check_entry("acme", "beta/secret")
    check_entry("acme", "acme/main")
    check_entry("acme", "shared-menu")


def test_publishing_refuses_a_jump_into_another_institution() -> None:
    """parse_flow names the jump's flowId as the problem's path."""
    data = _flow("acme/main")
    data["nodes"][0]["flowId"] = "beta/secret"
    data["nodes"][0]["nodeId"] = "deep"
    flow, problems = parse_flow(data)
    assert flow is None
    assert [p.path for p in problems] == ["nodes[0].flowId"]
    assert "another institution" in problems[0].message


def test_publishing_refuses_another_institutions_fallback_flow() -> None:
    """settings.fallback.fallbackFlowId is checked like a jump."""
    data = _flow("acme/main", settings={"fallback": {"fallbackFlowId": "beta/secret"}})
    flow, problems = parse_flow(data)
    assert flow is None
    assert [p.path for p in problems] == ["settings.fallback.fallbackFlowId"]


def test_a_shared_flow_names_flows_by_name_only() -> None:
    """A shared flow with an owner's id in a jump is refused; by name it is accepted."""
    data = _flow("main")
    data["nodes"][0]["flowId"] = "acme/menu"
    assert parse_flow(data)[0] is None
    assert parse_flow(_flow("main"))[0] is not None
    assert parse_flow(_flow("acme/main"))[0] is not None


def test_a_malformed_flow_reference_is_refused() -> None:
    """A reference must look like a flow id: no spaces, at most one owner."""
    data = _flow("main")
    data["nodes"][0]["flowId"] = "a/b/c"
    flow, problems = parse_flow(data)
    assert flow is None
    assert problems[0].path == "nodes[0].flowId"


@pytest.mark.parametrize(
    ("allowed", "flow_id", "institution", "refused"),
    [
        (None, "menu", "acme", False),  # shared flows may call an unowned dependency
        (None, "acme/menu", "acme", True),  # an institution's flow may not
        (["acme"], "acme/menu", "acme", False),
        (["acme"], "beta/menu", "beta", True),
        (["*"], "beta/menu", "beta", False),
        (["beta"], "menu", "acme", True),  # a shared flow acts as the institution it runs for
        (["beta"], "menu", "beta", False),
        (["beta"], "menu", None, False),  # at publish, a shared flow's runner is unknown
        (["acme"], "acme/menu", "beta", True),  # a flow running for another institution
    ],
)
def test_dependencies_serve_only_the_institutions_they_name(
    allowed: list[str] | None, flow_id: str, institution: str | None, refused: bool
) -> None:
    """The institutions key decides; without it only shared flows may call."""
    denial = dependency_denial("crm", allowed, flow_id=flow_id, institution_id=institution)
    assert (denial is not None) is refused


def test_an_institutions_flow_may_not_call_an_undeclared_dependency() -> None:
    """Undeclared is refused for an institution's flow, left to the operator's warning
    for a shared one."""
    uses = [("a", "crm"), ("b", "nowhere"), ("c", "open")]
    declared = {"crm": ["beta"], "open": ["*"]}
    assert [n for n, _ in dependency_problems("acme/x", iter(uses), declared)] == ["a", "b"]
    assert list(dependency_problems("x", iter(uses), declared)) == []
