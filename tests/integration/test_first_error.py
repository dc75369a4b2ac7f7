"""The error that started an execution's trouble is kept beside the last one, and an
execution waiting for a dependency says which: an engine over a real store and a real
HTTP server, driven by hand with a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trilha.config import BreakerConfig, Config, DependencyConfig
from trilha.core.execution import iso
from trilha.core.states import ExecutionStatus
from trilha.engine.recovery import FIRST_ERROR
from trilha.views import execution_summary

S = ExecutionStatus
PATH = "/customers/91234"


def lookup_flow(**node: Any) -> dict[str, Any]:
    """One CRM lookup tried up to three times; the fallback says sorry."""
    return {
        "id": "lookup",
        "start": "lookup",
        "nodes": [
            {
                "id": "lookup",
                "type": "http",
                "dependency": "crm",
                "url": PATH,
                "saveAs": "customer",
                "retry": {"maxAttempts": 3, "initialIntervalSeconds": 1, "jitter": False},
                "fallback": {"next": "sorry"},
                "next": "ok",
                **node,
            },
            {"id": "ok", "type": "end", "text": "ok"},
            {"id": "sorry", "type": "end", "text": "sorry"},
        ],
    }


def crm(url: str, **breaker: Any) -> Config:
    return Config(
        dependencies={"crm": DependencyConfig(base_url=url, breaker=BreakerConfig(**breaker))}
    )


async def run_attempts(h: Any, attempts: int) -> None:
    """Let ``attempts`` retries come due (the backoff doubles from one second)."""
    for _ in range(attempts):
        h.clock.advance(10)
        await h.settle()


async def test_first_error_stays_behind_later_ones(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 500, then a 404: the execution ends by its fallback with the 404 as its error
    and the 500 as its first error, both naming the dependency, the status and the
    request; the API shows both."""
    http_server.fail_first("GET", PATH, 1, status=500)
    http_server.route("GET", PATH, status=404, body={"e": "gone"})
    h = make_harness(crm(http_server.url))
    await h.publish(lookup_flow())
    ex = await h.start("lookup")
    await h.settle()
    waiting = await h.get(ex.id)
    assert waiting.status is S.RECOVERING
    assert waiting.error is not None and waiting.error["status"] == 500
    assert waiting.meta[FIRST_ERROR] == {**waiting.error, "at": h.clock.now()}
    await run_attempts(h, 1)
    ended = await h.get(ex.id)
    assert ended.status is S.COMPLETED
    request = f"GET {http_server.url}{PATH}"
    assert ended.error is not None
    assert (ended.error["status"], ended.error["dependency"], ended.error["request"]) == (
        404,
        "crm",
        request,
    )
    first = ended.meta[FIRST_ERROR]
    assert (first["status"], first["dependency"], first["request"], first["attempt"]) == (
        500,
        "crm",
        request,
        1,
    )
    shown = execution_summary(ended)
    assert shown["firstError"]["status"] == 500 and shown["error"]["status"] == 404
    assert shown["firstError"]["at"] == iso(first["at"])  # a time as every other on the wire
    assert shown["waitingForDependency"] is None
    steps = [c.error for c in await h.store.checkpoints(ex.id) if c.error]
    assert [e["details"]["dependency"] for e in steps] == ["crm", "crm"]


async def test_recovery_clears_the_first_error(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 500, a 503, then an answer: while it retries the 500 stays its first error
    behind the 503; once the node succeeds it has neither."""
    http_server.fail_first("GET", PATH, 1, status=500)
    http_server.fail_first("GET", PATH, 1, status=503)
    http_server.route("GET", PATH, body={"name": "Ana"})
    h = make_harness(crm(http_server.url))
    await h.publish(lookup_flow())
    ex = await h.start("lookup")
    await h.settle()
    await run_attempts(h, 1)
    retrying = await h.get(ex.id)
    assert retrying.error is not None and retrying.error["status"] == 503
    assert retrying.meta[FIRST_ERROR]["status"] == 500
    await run_attempts(h, 1)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["customer"] == {"name": "Ana"}
    assert done.error is None and FIRST_ERROR not in done.meta
    assert execution_summary(done)["firstError"] is None


async def test_waiting_execution_names_its_dependency(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Behind an open breaker an execution that waits for the dependency says which
    one, is counted for it by the store, and keeps the 500 that opened the breaker as
    its first error; when the dependency answers again it waits for nothing."""
    http_server.route("GET", PATH, status=500)
    config = crm(http_server.url, failure_threshold=1, count=["5xx"], open_seconds=30)
    h = make_harness(config)
    flow = lookup_flow(waitForDependency={"maxWaitSeconds": 300})
    flow["nodes"][0]["retry"] = {"maxAttempts": 2, "initialIntervalSeconds": 1}
    await h.publish(flow)
    ex = await h.start("lookup")
    await h.settle()
    h.clock.advance(5)
    await h.settle()
    waiting = await h.get(ex.id)
    assert (waiting.status, waiting.waiting_for) == (S.RECOVERING, "dependency")
    shown = execution_summary(waiting)
    assert shown["waitingForDependency"] == "crm"
    assert shown["error"]["kind"] == "dependency_unavailable"
    assert shown["firstError"]["status"] == 500
    assert await h.store.waiting_for_dependencies() == {"crm": 1}
    assert await h.store.waiting_for_dependencies("another") == {}
    http_server.route("GET", PATH, body={"name": "Ana"})
    for _ in range(10):
        h.clock.advance(30)
        await h.settle()
        if (await h.get(ex.id)).status.terminal:
            break
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["customer"] == {"name": "Ana"}
    assert execution_summary(done)["waitingForDependency"] is None
    assert await h.store.waiting_for_dependencies() == {}
