"""WhatsApp templates in flows: the ``template`` property of the nodes that speak (its
model and Meta's shape), what publishing refuses (each problem at its path), its strings
linted as templates, the schema's descriptions, its rendering (limits cut and noted, the
message's budget), and what ``say`` sends inside and outside a channel's window."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trilha.config import Config
from trilha.core.budget import Budget
from trilha.core.flow import MessageNode, flow_json_schema, load_flow, parse_flow
from trilha.core.template_messages import (
    MAX_HEADER_TEXT,
    TemplateMessage,
    render_template_message,
)
from trilha.core.templates import render
from trilha.core.window import ServiceWindow
from trilha.errors import ExpressionError, LimitExceeded, OutsideWindow
from trilha.processors.base import StepContext
from trilha.processors.saying import say

GOOD: dict[str, Any] = {
    "name": "appointment_reminder",
    "language": "pt_BR",
    "components": [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://x.test/a.png"}}],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "{{contact.name}}"},
                {
                    "type": "currency",
                    "currency": {"fallback_value": "R$ 10", "code": "BRL", "amount_1000": 10000},
                },
                {"type": "date_time", "date_time": {"fallback_value": "12/03"}},
            ],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": 0,
            "parameters": [{"type": "payload", "payload": "yes"}],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": 1,
            "parameters": [{"type": "text", "text": "b/{{booking}}"}],
        },
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": 2,
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        },
    ],
}


def flow_with(template: Any, node_type: str = "message", **fields: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "n", "type": node_type, "template": template}
    node.setdefault("text", "Olá")
    node.update(fields)
    if node_type == "message":
        node["next"] = "bye"
    return {
        "id": "f",
        "start": "n",
        "nodes": [node, {"id": "bye", "type": "end"}],
    }


def problems(template: Any, node_type: str = "message", **fields: Any) -> list[str]:
    _, found = parse_flow(flow_with(template, node_type, **fields))
    return [str(p) for p in found if p.severity == "error"]


def changed(**parts: Any) -> dict[str, Any]:
    return GOOD | parts


def body(*parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "body", "parameters": list(parameters)}]


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


# ----------------------------------------------------------------------------- publishing


@pytest.mark.parametrize("node_type", ["message", "question", "handoff", "end"])
def test_a_good_template_publishes_on_every_node_that_speaks(node_type: str) -> None:
    """Meta's documented shape, with every parameter type, is accepted on each node."""
    extra = {"variable": "x", "next": "bye"} if node_type == "question" else {}
    if node_type == "handoff":
        extra = {"queue": "desk"}
    flow, found = parse_flow(flow_with(GOOD, node_type, **extra))
    assert [str(p) for p in found if p.severity == "error"] == []
    assert flow is not None
    node = flow.node("n")
    assert isinstance(node.template, TemplateMessage)  # type: ignore[union-attr]
    assert node.template.components[1].parameters[1].currency.amount_1000 == 10000  # type: ignore[union-attr]


def test_a_template_survives_the_flows_wire_form() -> None:
    """A published flow's wire form keeps the template as written (Meta's keys)."""
    flow = load_flow(flow_with(GOOD))
    wired = flow.wire()["nodes"][0]["template"]
    assert wired == GOOD
    assert load_flow(flow.wire()).wire() == flow.wire()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            changed(name="Appointment Reminder"),
            "nodes[0].template.name: 'Appointment Reminder' is not a template name",
        ),
        (changed(name="a" * 513), "nodes[0].template.name: String should have at most 512"),
        (changed(language="pt-BR"), "nodes[0].template.language: 'pt-BR' is not a language code"),
        (changed(language="portuguese"), "nodes[0].template.language: 'portuguese' is not"),
        (
            changed(components=[{"type": "footer", "parameters": [text("x")]}]),
            "nodes[0].template.components[0].type: Input should be 'header', 'body' or 'button'",
        ),
        (
            changed(components=body(text("a")) + body(text("b"))),
            "nodes[0].template.components[1]: a second body (the first is components[0])",
        ),
        (
            changed(components=[{"type": "header", "parameters": [text("a"), text("b")]}]),
            "nodes[0].template.components[0].parameters[1]: a header takes at most 1 parameter",
        ),
        (
            changed(components=[{"type": "header", "parameters": []}]),
            "nodes[0].template.components[0].parameters: missing: a header is listed for its",
        ),
        (
            changed(components=body({"type": "payload", "payload": "x"})),
            "nodes[0].template.components[0].parameters[0].type: 'payload' is not for a body"
            " (it takes currency, date_time, text)",
        ),
        (
            changed(components=body({"type": "image", "image": {"link": "https://x/a.png"}})),
            "nodes[0].template.components[0].parameters[0].type: 'image' is not for a body",
        ),
        (
            changed(components=[{"type": "body", "index": 1, "parameters": [text("a")]}]),
            "nodes[0].template.components[0].index: only for a button, not a body",
        ),
        (
            changed(components=[{"type": "button", "index": 0, "parameters": [text("a")]}]),
            "nodes[0].template.components[0].sub_type: missing: a button is quick_reply, url",
        ),
        (
            changed(
                components=[
                    {"type": "button", "sub_type": "url", "parameters": [text("a")]},
                ]
            ),
            "nodes[0].template.components[0].index: missing: the button's position, 0 to 9",
        ),
        (
            changed(
                components=[
                    {"type": "button", "sub_type": "url", "index": 10, "parameters": [text("a")]},
                ]
            ),
            "nodes[0].template.components[0].index: Input should be less than or equal to 9",
        ),
        (
            changed(
                components=[
                    {"type": "button", "sub_type": "url", "index": 1, "parameters": [text("a")]},
                    {"type": "button", "sub_type": "url", "index": 1, "parameters": [text("b")]},
                ]
            ),
            "nodes[0].template.components[1].index: button 1 is filled twice (also components[0])",
        ),
        (
            changed(
                components=[
                    {
                        "type": "button",
                        "sub_type": "quick_reply",
                        "index": 0,
                        "parameters": [
                            {"type": "payload", "payload": "a"},
                            {"type": "payload", "payload": "b"},
                        ],
                    }
                ]
            ),
            "nodes[0].template.components[0].parameters: a button takes exactly 1 parameter",
        ),
        (
            changed(components=body({"type": "text"})),
            "nodes[0].template.components[0].parameters[0].text: missing: a 'text' parameter"
            " holds its value in 'text'",
        ),
        (
            changed(components=body({"type": "text", "text": "a", "payload": "b"})),
            "nodes[0].template.components[0].parameters[0].payload: not for a 'text' parameter",
        ),
        (
            changed(components=body({"type": "text", "txt": "a"})),
            "nodes[0].template.components[0].parameters[0].txt: unknown field",
        ),
        (
            changed(
                components=body(
                    {"type": "text", "text": "a", "parameter_name": "first_name"}, text("b")
                )
            ),
            "nodes[0].template.components[0].parameters[1].parameter_name: missing: the other"
            " parameters are named",
        ),
        (
            changed(components=body({"type": "text", "text": "a", "parameter_name": "First"})),
            "nodes[0].template.components[0].parameters[0].parameter_name: 'First' is not a"
            " parameter name",
        ),
        (
            changed(
                components=[{"type": "header", "parameters": [text("x" * (MAX_HEADER_TEXT + 1))]}]
            ),
            "nodes[0].template.components[0].parameters[0].text: at most 60 characters for a"
            " header's parameter; this one has 61",
        ),
        (
            changed(components=[*body(text("x" * 1025)), GOOD["components"][0]]),
            "nodes[0].template.components[0].parameters[0].text: at most 1024 characters",
        ),
        (
            changed(
                components=[
                    {
                        "type": "button",
                        "sub_type": "copy_code",
                        "index": 0,
                        "parameters": [{"type": "coupon_code", "coupon_code": "X" * 16}],
                    }
                ]
            ),
            "nodes[0].template.components[0].parameters[0].coupon_code: at most 15 characters",
        ),
        (
            changed(
                components=body(
                    {
                        "type": "currency",
                        "currency": {"fallback_value": "1", "code": "real", "amount_1000": 1},
                    }
                )
            ),
            "nodes[0].template.components[0].parameters[0].currency.code: 'real' is not an ISO"
            " 4217 code",
        ),
        (
            changed(
                components=body(
                    {
                        "type": "currency",
                        "currency": {"fallback_value": "1", "code": "BRL", "amount_1000": "ten"},
                    }
                )
            ),
            "nodes[0].template.components[0].parameters[0].currency.amount_1000: an integer, or"
            " a template",
        ),
        (
            changed(
                components=body(
                    {
                        "type": "currency",
                        "currency": {"fallback_value": "1", "code": "BRL", "amount_1000": 2**31},
                    }
                )
            ),
            "nodes[0].template.components[0].parameters[0].currency.amount_1000: must be between",
        ),
        (
            changed(
                components=[
                    {
                        "type": "header",
                        "parameters": [{"type": "video", "video": {"link": "ftp://x/v.mp4"}}],
                    }
                ]
            ),
            "nodes[0].template.components[0].parameters[0].video.link: an http(s) URL",
        ),
        (
            changed(
                components=[
                    {
                        "type": "header",
                        "parameters": [
                            {
                                "type": "image",
                                "image": {"link": "https://x/a.png", "filename": "a.png"},
                            }
                        ],
                    }
                ]
            ),
            "nodes[0].template.components[0].parameters[0].image.filename: only for a document",
        ),
        (
            changed(
                components=[
                    {
                        "type": "button",
                        "sub_type": "quick_reply",
                        "index": i % 10,
                        "parameters": [{"type": "payload", "payload": "p"}],
                    }
                    for i in range(11)
                ]
            ),
            "nodes[0].template.components[10]: at most 10 buttons",
        ),
        (
            changed(components=body(*[text("a")] * 101)),
            "nodes[0].template.components[0].parameters: List should have at most 100 items",
        ),
        (
            changed(components=body(text("{{ name "))),
            "nodes[0].template.components[0].parameters[0].text: '{{' at character 1 is not closed",
        ),
    ],
)
def test_publishing_names_each_problem_at_its_path(template: Any, expected: str) -> None:
    found = problems(template)
    assert any(p.startswith(expected) for p in found), found


def test_a_body_alone_may_be_long() -> None:
    """A body's parameter may have 32,768 characters when the body is the only component
    (Meta's limit); with another component, 1,024."""
    assert problems(changed(components=body(text("x" * 4000)))) == []


def test_a_template_is_no_substitute_for_the_nodes_text() -> None:
    """Inside the window the node says its own content: an end with only a template has
    nothing to say there."""
    found = problems(GOOD, "end", text=None)
    assert "nodes[0].template: a template is what is sent outside the 24-hour window" in found[0]


def test_a_reminders_template_is_checked_at_its_path() -> None:
    """A question's reminders carry templates too, checked like the node's."""
    flow = {
        "id": "f",
        "start": "q",
        "nodes": [
            {
                "id": "q",
                "type": "question",
                "text": "?",
                "variable": "a",
                "reminders": [
                    {"afterSeconds": 60, "text": "!", "template": changed(language="xx-YY")}
                ],
            }
        ],
    }
    _, found = parse_flow(flow)
    assert any(
        str(p).startswith("nodes[0].reminders[0].template.language: 'xx-YY' is not") for p in found
    ), found


def test_a_template_reading_an_unknown_variable_is_a_warning() -> None:
    """Its strings are linted like the node's text: an unset variable is a warning."""
    _, found = parse_flow(flow_with(changed(components=body(text("{{ bookng.id }}")))))
    assert any(
        p.severity == "warning"
        and p.path == "nodes[0].template.components[0].parameters[0].text"
        and "bookng" in p.message
        for p in found
    ), found


def test_the_schema_describes_the_template() -> None:
    """Every property of the template's models is described, and every node that speaks
    (and a reminder) has it."""
    defs = flow_json_schema()["$defs"]
    missing = []
    for model in (
        "TemplateMessage",
        "TemplateComponent",
        "TemplateParameter",
        "TemplateCurrency",
        "TemplateDateTime",
        "TemplateMedia",
    ):
        missing += [
            f"{model}.{name}"
            for name, prop in defs[model]["properties"].items()
            if not prop.get("description")
        ]
    assert missing == []
    for model in ("MessageNode", "QuestionNode", "HandoffNode", "EndNode", "Reminder"):
        assert defs[model]["properties"]["template"]["description"], model
    assert defs["TemplateMessage"]["properties"]["name"]["pattern"] == "^[a-z0-9_]+$"
    assert set(defs["TemplateComponent"]["properties"]) == {
        "type",
        "sub_type",
        "index",
        "parameters",
    }


# ----------------------------------------------------------------------------- rendering


def filler(variables: Mapping[str, Any], budget: Budget | None = None) -> Any:
    spent = budget or Budget()
    return lambda template: render(template, variables, spent)


def test_rendering_gives_metas_object_with_every_string_filled() -> None:
    """Each string is rendered, the language becomes Meta's ``{"code": ...}``, numbers
    stay numbers; nothing noted when all fits."""
    notes: list[str] = []
    template = TemplateMessage.model_validate(
        changed(
            components=[
                *body(
                    text("{{contact.name}}"),
                    {
                        "type": "currency",
                        "currency": {
                            "fallback_value": "R$ {{price}}",
                            "code": "{{currency}}",
                            "amount_1000": "{{ price * 1000 }}",
                        },
                    },
                ),
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": 0,
                    "parameters": [text("b/{{booking}}")],
                },
            ]
        )
    )
    out = render_template_message(
        template,
        filler({"contact": {"name": "Ana"}, "price": 12.5, "currency": "brl", "booking": 7}),
        notes,
    )
    assert out == {
        "name": "appointment_reminder",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Ana"},
                    {
                        "type": "currency",
                        "currency": {
                            "fallback_value": "R$ 12.5",
                            "code": "BRL",
                            "amount_1000": 12500,
                        },
                    },
                ],
            },
            {"type": "button", "sub_type": "url", "index": 0, "parameters": [text("b/7")]},
        ],
    }
    assert notes == []


def test_a_template_without_components_is_just_its_name() -> None:
    notes: list[str] = []
    out = render_template_message(
        TemplateMessage(name="hello_world", language="en_US"), filler({}), notes
    )
    assert out == {"name": "hello_world", "language": {"code": "en_US"}}


def test_rendered_values_past_metas_limits_are_cut_and_noted() -> None:
    """A header's value past 60 characters ends in '…' at 60; a blank value (Meta
    refuses empty parameters) is sent as '…'; each change noted with its path."""
    notes: list[str] = []
    template = TemplateMessage.model_validate(
        changed(
            components=[
                {"type": "header", "parameters": [text("{{long}}")]},
                *body(text("{{missing}}")),
            ]
        )
    )
    out = render_template_message(template, filler({"long": "x" * 100}), notes)
    header = out["components"][0]["parameters"][0]["text"]
    assert len(header) == MAX_HEADER_TEXT and header.endswith("…")
    assert out["components"][1]["parameters"][0]["text"] == "…"
    assert notes == [
        "template.components[0].parameters[0].text rendered 100 characters; cut to 60"
        " (WhatsApp's limit)",
        "template.components[1].parameters[0].text rendered empty; '…' sent",
    ]


@pytest.mark.parametrize("price", ["abc", "12.5", "", "3000000000", "nan"])
def test_an_amount_that_is_not_an_integer_is_not_sent(price: str) -> None:
    """A wrong amount of money is worse than no message: the node fails (validation)."""
    template = TemplateMessage.model_validate(
        changed(
            components=body(
                {
                    "type": "currency",
                    "currency": {
                        "fallback_value": "x",
                        "code": "BRL",
                        "amount_1000": "{{ price }}",
                    },
                }
            )
        )
    )
    with pytest.raises(ExpressionError, match="amount_1000 rendered"):
        render_template_message(template, filler({"price": price}), [])


def test_rendering_spends_the_messages_budget() -> None:
    """The template's strings count against the same bound as the node's text."""
    template = TemplateMessage.model_validate(
        changed(components=body(text("{{#each items}}{{this}}{{/each}}")))
    )
    budget = Budget(1_000, "the message")
    with pytest.raises(LimitExceeded):
        render_template_message(template, filler({"items": ["x" * 100] * 20}, budget), [])


# ----------------------------------------------------------------------------- say()

NOW = 1_800_000_000.0


def ctx(window: ServiceWindow | None, variables: dict[str, Any] | None = None) -> StepContext:
    flow = load_flow(flow_with(GOOD))
    return StepContext(
        execution_id="e",
        institution_id="i",
        conversation_id="c",
        contact_id="k",
        flow=flow,
        variables={"contact": {"name": "Ana"}, "booking": 7} | (variables or {}),
        node_state={},
        now=NOW,
        config=Config(),
        window=window,
    )


def node(**fields: Any) -> MessageNode:
    return MessageNode.model_validate(
        {"id": "n", "type": "message", "text": "Oi {{contact.name}}"} | fields
    )


def test_without_a_window_the_template_is_not_even_rendered() -> None:
    """A channel with no window gets the content alone, as before templates existed."""
    said = say(ctx(None), "Oi {{contact.name}}", node(template=GOOD), "the message")
    assert (said.text, said.content) == ("Oi Ana", None)


def test_inside_the_window_the_template_rides_along() -> None:
    said = say(
        ctx(ServiceWindow(86_400, NOW - 3600)), "Oi {{contact.name}}", node(template=GOOD), "m"
    )
    assert said.content is not None
    assert said.content["type"] == "text" and said.content["text"] == "Oi Ana"
    assert said.content["template"]["name"] == "appointment_reminder"
    assert said.content["template"]["components"][1]["parameters"][0] == text("Ana")


def test_outside_the_window_the_template_is_the_message() -> None:
    said = say(
        ctx(ServiceWindow(86_400, NOW - 86_400)), "Oi {{contact.name}}", node(template=GOOD), "m"
    )
    assert said.text == "Oi Ana"
    assert said.content is not None and said.content["type"] == "template"
    assert said.content["text"] == "Oi Ana"
    assert said.degraded == (
        "template 'appointment_reminder' sent instead (the contact last wrote 24.0 h ago,"
        " outside the 24 h window)",
    )


def test_outside_the_window_without_a_template_the_node_fails() -> None:
    with pytest.raises(OutsideWindow, match="has not written") as caught:
        say(ctx(ServiceWindow(86_400, None)), "Oi", node(), "m")
    assert caught.value.details["kind"] == "outside_window"
    # inside, a node without a template says its text
    assert say(ctx(ServiceWindow(86_400, NOW - 1)), "Oi", node(), "m").text == "Oi"
