"""Flow parsing and validation: shapes, graph rules, limits and the JSON Schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import pytest

from trilha.core.flow import (
    MAX_NODES,
    NodeBase,
    NodeTypes,
    flow_json_schema,
    load_flow,
    parse_flow,
)
from trilha.errors import FlowValidationError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def checkout() -> dict[str, Any]:
    return {
        "id": "checkout",
        "start": "hello",
        "nodes": [
            {"id": "hello", "type": "message", "text": "Hi", "next": "ask"},
            {
                "id": "ask",
                "type": "question",
                "text": "Amount?",
                "variable": "amount",
                "validate": {"kind": "number"},
                "next": "route",
            },
            {
                "id": "route",
                "type": "condition",
                "branches": [{"when": "amount > 100", "next": "big"}],
                "default": "small",
            },
            {"id": "big", "type": "message", "text": "Big", "next": "done"},
            {"id": "small", "type": "message", "text": "Small", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


def errors(data: Any) -> list[str]:
    flow, problems = parse_flow(data)
    assert flow is None
    return [str(p) for p in problems if p.severity == "error"]


def test_valid_flow_parses_with_typed_nodes() -> None:
    """A valid flow parses; nodes are typed by their type field."""
    flow = load_flow(checkout())
    assert flow.id == "checkout" and flow.version == 1
    assert [n.type for n in flow.nodes] == [
        "message",
        "question",
        "condition",
        "message",
        "message",
        "end",
    ]
    assert flow.node("ask").variable == "amount"  # type: ignore[union-attr]
    assert flow.node("nope") is None


def test_camel_case_on_the_wire() -> None:
    """Wire names are camelCase and round-trip through wire()."""
    data = checkout()
    data["settings"] = {"inputTimeoutSeconds": 60, "fallback": {"fallbackFlowId": "help"}}
    data["nodes"][1]["maxInvalid"] = 3
    flow = load_flow(data)
    assert flow.settings.input_timeout_seconds == 60
    assert flow.settings.fallback.fallback_flow_id == "help"
    wire = flow.wire()
    assert wire["settings"]["inputTimeoutSeconds"] == 60
    assert wire["nodes"][1]["maxInvalid"] == 3
    assert load_flow(wire) == flow


def test_dangling_next_is_named_by_path() -> None:
    """A next to a missing node is reported as nodes[i].next with the flow id."""
    data = checkout()
    data["nodes"][3]["next"] = "pay"
    assert errors(data) == ["nodes[3].next: no node 'pay' in flow 'checkout'"]


def test_dangling_branch_and_default() -> None:
    """Branch and default targets are checked too."""
    data = checkout()
    data["nodes"][2]["branches"][0]["next"] = "x"
    data["nodes"][2]["default"] = "y"
    assert set(errors(data)) == {
        "nodes[2].branches[0].next: no node 'x' in flow 'checkout'",
        "nodes[2].default: no node 'y' in flow 'checkout'",
    }


def test_unknown_node_type() -> None:
    """An unknown type is refused, listing the known ones."""
    data = checkout()
    data["nodes"][0]["type"] = "telegram"
    (msg,) = errors(data)
    assert msg.startswith("nodes[0].type: unknown node type 'telegram' (known: ai, condition")


def test_duplicate_ids() -> None:
    """A repeated node id is refused, pointing at both."""
    data = checkout()
    data["nodes"][4]["id"] = "big"
    assert "nodes[4].id: duplicate node id 'big' (first at nodes[3])" in errors(data)


def test_missing_start_and_bad_start() -> None:
    """A flow needs a start that names one of its nodes."""
    data = checkout()
    del data["start"]
    assert errors(data) == ["start: missing: a flow must name its start node"]
    data["start"] = "nowhere"
    assert errors(data) == ["start: no node 'nowhere' in flow 'checkout'"]


def test_unreachable_node_is_a_warning() -> None:
    """An unreachable node does not make the flow invalid, but is reported."""
    data = checkout()
    data["nodes"].append({"id": "orphan", "type": "end"})
    flow, problems = parse_flow(data)
    assert flow is not None
    assert [str(p) for p in problems] == [
        "nodes[6]: warning: node 'orphan' is unreachable from start 'hello'"
    ]


def test_a_condition_reading_a_variable_no_node_sets_is_a_warning() -> None:
    """A typo in a ``when`` (``sise`` for ``size``) would quietly take ``default`` on every
    run: it is flagged as templates are, once per name, and a name a node sets is not."""
    data = {
        "id": "pizza",
        "start": "ask",
        "nodes": [
            {"id": "ask", "type": "question", "text": "Size?", "variable": "size", "next": "route"},
            {
                "id": "route",
                "type": "condition",
                "branches": [
                    {"when": "sise == 'large'", "next": "bye"},
                    {"when": "size == 'small' and sise != ''", "next": "bye"},
                ],
                "default": "bye",
            },
            {"id": "bye", "type": "end"},
        ],
    }
    flow, problems = parse_flow(data)
    assert flow is not None
    assert [str(p) for p in problems] == [
        "nodes[1].branches[0].when: warning: reads 'sise', which no node of the flow sets"
        " (a variable given at the start?)"
    ]


def test_field_errors_name_the_field() -> None:
    """Shape errors name the wire path of the field and the reason."""
    data = checkout()
    data["nodes"][1]["maxInvalid"] = -1
    del data["nodes"][0]["text"]
    data["nodes"][3]["colour"] = "red"
    got = errors(data)
    assert "nodes[0].text: missing: a message needs a text, media or a location" in got
    assert any(
        m.startswith("nodes[1].maxInvalid: Input should be greater than or equal to 0") for m in got
    )
    assert "nodes[3].colour: unknown field" in got


def test_bad_expression_and_regex_are_refused() -> None:
    """Condition expressions and regex patterns are compiled at validation."""
    data = checkout()
    data["nodes"][2]["branches"][0]["when"] = "amount >"
    data["nodes"][1]["validate"] = {"kind": "regex", "pattern": "(["}
    got = errors(data)
    assert any(m.startswith("nodes[2].branches[0].when: bad expression:") for m in got)
    assert any(
        m.startswith("nodes[1].validate.pattern: pattern is not accepted by the linear-time")
        for m in got
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "back-references and look-arounds are not supported"),
        (r"^(?=.*\d).{8,}$", "back-references and look-arounds are not supported"),
        (r"(.*a){300}", "too complex: its program size is"),
    ],
)
def test_patterns_the_linear_engine_refuses_are_publish_errors(pattern: str, reason: str) -> None:
    """Finding 4: a pattern RE2 cannot run, or one too large, is refused when published."""
    data = checkout()
    data["nodes"][1]["validate"] = {"kind": "regex", "pattern": pattern}
    got = errors(data)
    assert any(m.startswith("nodes[1].validate.pattern: ") and reason in m for m in got), got


def test_choice_needs_options_and_regex_needs_pattern() -> None:
    """A choice question without options or a regex without pattern is refused."""
    data = checkout()
    data["nodes"][1]["validate"] = {"kind": "choice"}
    assert (
        "nodes[1].validate.options: missing: kind 'choice' needs options"
        " (or the question's buttons or list)" in errors(data)
    )


def test_size_limits() -> None:
    """Flows beyond 5,000 nodes or 1 MiB are refused with a clear message."""
    data = checkout()
    data["nodes"] = [{"id": f"n{i}", "type": "end"} for i in range(MAX_NODES + 1)]
    assert errors(data) == [f"nodes: flow has {MAX_NODES + 1} nodes; the limit is {MAX_NODES}"]
    flow, problems = parse_flow(checkout(), source_bytes=2_000_000)
    assert flow is None
    assert "the limit is 1048576 (1 MiB)" in str(problems[0])


def test_not_an_object() -> None:
    """Garbage is refused without an exception."""
    assert errors([1, 2]) == ["a flow must be a JSON object"]
    assert errors({"id": "x", "start": "a", "nodes": [7]}) == [
        "nodes[0]: a node must be a JSON object",
        "start: no node 'a' in flow 'x'",
    ]


def test_load_flow_raises_with_every_problem() -> None:
    """load_flow raises FlowValidationError carrying all problems."""
    data = checkout()
    data["nodes"][3]["next"] = "pay"
    data["nodes"][4]["next"] = "pay"
    with pytest.raises(FlowValidationError) as info:
        load_flow(data)
    assert len(info.value.problems) == 2


def test_plugin_node_type_joins_validation_and_schema() -> None:
    """A registered third-party node model is accepted and appears in the schema."""

    class SmsNode(NodeBase):
        type: Literal["sms"]
        number: str

    types = NodeTypes()
    types.register("sms", SmsNode)
    data = checkout()
    data["nodes"][0] = {"id": "hello", "type": "sms", "number": "123", "next": "ask"}
    flow, problems = parse_flow(data, types)
    assert flow is not None, problems
    assert isinstance(flow.nodes[0], SmsNode)
    schema = json.dumps(flow_json_schema(types))
    assert '"sms"' in schema


def test_json_schema_lists_every_builtin_type() -> None:
    """The published schema is a JSON Schema with the built-in node types."""
    schema = flow_json_schema()
    text = json.dumps(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    for node_type in (
        "message",
        "question",
        "condition",
        "set",
        "delay",
        "jump",
        "handoff",
        "end",
        "http",
    ):
        assert f'"{node_type}"' in text
    assert "inputTimeoutSeconds" in text


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    """Every example flow validates without errors."""
    flow, problems = parse_flow(json.loads(path.read_text()))
    assert flow is not None, [str(p) for p in problems]


def test_parse_does_not_mutate_input() -> None:
    """Parsing leaves the caller's dict untouched."""
    data = checkout()
    before = copy.deepcopy(data)
    parse_flow(data)
    assert data == before
