"""The ai node: intents from a real NLP server on 127.0.0.1, keyword fallback when it
is down or unsure, routing, and validation of the node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_dependencies import closed_port_url  # tests/integration is on sys.path (rootdir mode)

from trilha.config import BreakerConfig, Config, DependencyConfig
from trilha.core.flow import load_flow
from trilha.core.states import ExecutionStatus
from trilha.errors import FlowValidationError

S = ExecutionStatus

INTENTS = [
    {"name": "billing", "keywords": ["boleto", "segunda via", "fatura*"], "next": "bill"},
    {"name": "cancel", "keywords": ["cancel*", "desistir"], "next": "stop"},
    {"name": "support", "keywords": ["não funciona", "erro"]},
]


def triage(**node: Any) -> dict[str, Any]:
    """Classify {{problem}}: billing -> bill, cancel -> stop, support -> next (help),
    nothing -> default (human)."""
    return {
        "id": "triage",
        "start": "classify",
        "nodes": [
            {
                "id": "classify",
                "type": "ai",
                "dependency": "nlp",
                "text": "{{problem}}",
                "intents": INTENTS,
                "default": "human",
                "next": "help",
                **node,
            },
            {"id": "bill", "type": "end", "text": "billing"},
            {"id": "stop", "type": "end", "text": "cancel"},
            {"id": "help", "type": "end", "text": "support"},
            {"id": "human", "type": "end", "text": "human"},
        ],
    }


def nlp(url: str, **breaker: Any) -> Config:
    return Config(
        dependencies={
            "nlp": DependencyConfig(
                base_url=url, timeout_seconds=2, breaker=BreakerConfig(**breaker)
            )
        }
    )


async def classify(h: Any, problem: str, conversation: str = "c1") -> Any:
    ex = await h.start("triage", conversation=conversation, variables={"problem": problem})
    await h.settle()
    return await h.get(ex.id)


async def said(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def history(h: Any, execution_id: str) -> list[S]:
    return [t.target for t in await h.store.transitions(execution_id)]


async def test_nlp_intent_routes_and_is_saved(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """The NLP's confident answer routes to the intent's next and is saved with source nlp."""
    http_server.route("POST", "/classify", body={"intent": "cancel", "confidence": 0.91})
    h = make_harness(nlp(http_server.url))
    await h.publish(triage())
    ex = await classify(h, "quero sair do plano")
    assert ex.status is S.COMPLETED
    assert await said(h, ex.id) == ["cancel"]
    assert ex.variables["intent"] == {"intent": "cancel", "source": "nlp", "confidence": 0.91}
    (request,) = http_server.requests
    assert request["body"] == {
        "text": "quero sair do plano",
        "intents": ["billing", "cancel", "support"],
    }
    assert S.DEGRADED not in await history(h, ex.id)


async def test_intent_without_next_follows_node_next(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A matched intent with no next of its own follows the node's next; saveAs is honoured."""
    http_server.route("POST", "/nlp/v1", body={"intent": "support", "confidence": 0.7})
    h = make_harness(nlp(http_server.url))
    await h.publish(triage(url="/nlp/v1", saveAs="triage.result"))
    ex = await classify(h, "o app trava")
    assert await said(h, ex.id) == ["support"]
    assert ex.variables["triage"]["result"]["intent"] == "support"


@pytest.mark.parametrize(
    "answer",
    [
        {"intent": "billing", "confidence": 0.3},
        {"intent": "weather", "confidence": 0.99},
        {"intent": None, "confidence": 0.0},
    ],
    ids=["low-confidence", "unknown-intent", "no-intent"],
)
async def test_unsure_nlp_lets_keywords_decide(
    make_harness: Callable[..., Any], http_server: Any, answer: dict[str, Any]
) -> None:
    """An answer below minConfidence or naming an undeclared intent is no match: the
    keywords decide (not degraded: the service answered)."""
    http_server.route("POST", "/classify", body=answer)
    h = make_harness(nlp(http_server.url))
    await h.publish(triage())
    ex = await classify(h, "Preciso da SEGUNDA VIA do boleto")
    assert await said(h, ex.id) == ["billing"]
    assert ex.variables["intent"] == {"intent": "billing", "source": "keywords", "confidence": None}
    assert S.DEGRADED not in await history(h, ex.id)


async def test_unsure_nlp_and_no_keyword_goes_to_default(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """No confident intent and no keyword: the node's default, saved with source nlp."""
    http_server.route("POST", "/classify", body={"intent": "billing", "confidence": 0.2})
    h = make_harness(nlp(http_server.url))
    await h.publish(triage(minConfidence=0.8))
    ex = await classify(h, "bom dia")
    assert await said(h, ex.id) == ["human"]
    assert ex.variables["intent"] == {"intent": None, "source": "nlp", "confidence": 0.2}


@pytest.mark.parametrize(
    "route",
    [
        None,
        {"status": 500, "body": {"error": "boom"}},
        {"status": 200, "body": {"label": "billing"}},
        {"status": 200, "body": {"intent": "billing", "confidence": "high"}},
        {"status": 200, "body": ["billing"]},
    ],
    ids=["no-route", "server-error", "wrong-shape", "bad-confidence", "not-an-object"],
)
async def test_nlp_failure_falls_back_to_keywords_degraded(
    make_harness: Callable[..., Any], http_server: Any, route: dict[str, Any] | None
) -> None:
    """When the NLP cannot answer, keywords classify (accent- and case-insensitive), the
    saved intent says source keywords and the execution history shows degraded."""
    if route is not None:
        http_server.route("POST", "/classify", **route)
    h = make_harness(nlp(http_server.url))
    await h.publish(triage())
    ex = await classify(h, "Quero CANCELAR e desistir!")
    assert ex.status is S.COMPLETED
    assert await said(h, ex.id) == ["cancel"]
    assert ex.variables["intent"] == {"intent": "cancel", "source": "keywords", "confidence": None}
    assert S.DEGRADED in await history(h, ex.id)
    assert len(http_server.requests) == 1


async def test_nlp_not_listening_falls_back_to_keywords(make_harness: Callable[..., Any]) -> None:
    """With nothing listening on the NLP's port the keywords classify, degraded."""
    h = make_harness(nlp(closed_port_url()))
    await h.publish(triage())
    ex = await classify(h, "meu celular não funciona")
    assert await said(h, ex.id) == ["support"]
    assert ex.variables["intent"]["source"] == "keywords"
    assert await history(h, ex.id) == [S.RUNNING, S.DEGRADED, S.COMPLETED]
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.node_id == "classify"]
    assert step.output["degraded"].startswith("POST http://127.0.0.1:")


async def test_no_keyword_when_degraded_goes_to_default(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """NLP down and no keyword matches: the default node, still degraded."""
    http_server.route("POST", "/classify", status=503)
    h = make_harness(nlp(http_server.url))
    await h.publish(triage())
    ex = await classify(h, "olá")
    assert await said(h, ex.id) == ["human"]
    assert ex.variables["intent"] == {"intent": None, "source": "keywords", "confidence": None}
    assert S.DEGRADED in await history(h, ex.id)


async def test_open_breaker_skips_the_nlp(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Once the NLP's breaker is open, later executions use keywords without calling it."""
    http_server.route("POST", "/classify", status=503)
    h = make_harness(nlp(http_server.url, failure_threshold=2))
    await h.publish(triage())
    for i in range(4):
        ex = await classify(h, "fatura errada", conversation=f"c{i}")
        assert await said(h, ex.id) == ["billing"]
        assert S.DEGRADED in await history(h, ex.id)
    assert len(http_server.requests) == 2
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.node_id == "classify"]
    assert "circuit open" in step.output["degraded"]


async def test_without_dependency_keywords_only(make_harness: Callable[..., Any]) -> None:
    """An ai node without a dependency classifies by keywords, not degraded."""
    h = make_harness()
    await h.publish(triage(dependency=None))
    ex = await classify(h, "Cancelamento, por favor")
    assert await said(h, ex.id) == ["cancel"]
    assert ex.variables["intent"]["source"] == "keywords"
    assert await history(h, ex.id) == [S.RUNNING, S.COMPLETED]


async def test_undeclared_dependency_fails_the_node(make_harness: Callable[..., Any]) -> None:
    """A dependency missing from the configuration is a deployment error, not degradation."""
    h = make_harness()
    await h.publish(triage(fallback={"next": "human"}))
    ex = await classify(h, "boleto")
    assert await said(h, ex.id) == ["human"]
    assert ex.error is not None and "not declared" in ex.error["message"]
    assert "intent" not in ex.variables


async def test_wait_for_dependency_then_keywords(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """With waitForDependency an open breaker parks the execution; when the wait is spent
    the keywords classify (degraded)."""
    http_server.route("POST", "/classify", status=503)
    h = make_harness(nlp(http_server.url, failure_threshold=1, open_seconds=600))
    await h.publish(triage(waitForDependency={"maxWaitSeconds": 60}))
    await classify(h, "boleto", conversation="c0")
    ex = await h.start("triage", conversation="c1", variables={"problem": "boleto"})
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.RECOVERING and ex.waiting_for == "dependency"
    for _ in range(5):
        h.clock.advance(30)
        await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED
    assert await said(h, ex.id) == ["billing"]
    assert ex.variables["intent"]["source"] == "keywords"
    assert S.RECOVERING in await history(h, ex.id) and S.DEGRADED in await history(h, ex.id)
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"default": "nowhere"}, "nodes[0].default: no node 'nowhere'"),
        (
            {"intents": [{"name": "a", "next": "gone"}]},
            "nodes[0].intents[0].next: no node 'gone'",
        ),
        ({"intents": []}, "nodes[0].intents"),
        ({"intents": [{"name": "a"}, {"name": "a"}]}, "declared twice"),
        ({"intents": [{"name": "a", "keywords": ["?!"]}]}, "no letters or digits"),
        ({"minConfidence": 1.5}, "nodes[0].minConfidence"),
        ({"dependency": None, "waitForDependency": {}}, "needs a declared dependency"),
        ({"waitForDependency": {"maxWaitSeconds": 0}}, "maxWaitSeconds"),
        ({"saveAs": "bad path"}, "not a valid variable path"),
    ],
)
def test_ai_node_validation(change: dict[str, Any], message: str) -> None:
    """Bad ai nodes are refused with the field named, including dangling targets."""
    with pytest.raises(FlowValidationError) as info:
        load_flow(triage(**change))
    assert any(message in str(p) for p in info.value.problems), info.value.problems
