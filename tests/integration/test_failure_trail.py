"""Every failure leaves a log trail from which the cause can be read (DESIGN §7).

A node whose call fails (an answer refusing it, a refused connection, a timeout) ends
its execution through ``failed``; the stored trail, ``trilha logs``'s lines and the
process log each hold a line that says what was asked and what went wrong, not only
that something did. (The mutation run, ``bench/mutations.py``, showed that no test
read the cause itself: replacing every error message by its exception's class name
broke none.)"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest

from effects_service import refused_port  # tests/ is on sys.path (rootdir mode)
from trilha.config import Config, DependencyConfig, LoggingConfig
from trilha.core.states import ExecutionStatus
from trilha.observability.logging import configure
from trilha.observability.trail import Identity, lines

S = ExecutionStatus


def flow(timeout: float = 10) -> dict[str, Any]:
    """One call, tried once, with no fallback: its failure is the execution's."""
    return {
        "id": "call",
        "start": "call",
        "settings": {"fallback": {"enabled": False}},
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "crm",
                "url": "/customers/42",
                "timeoutSeconds": timeout,
                "retry": {"maxAttempts": 1},
                "next": "end",
            },
            {"id": "end", "type": "end"},
        ],
    }


@pytest.mark.parametrize("failure", ["answer", "refused", "timeout"])
async def test_a_failed_call_says_what_was_asked_and_what_went_wrong(
    make_harness: Callable[..., Any], http_server: Any, process_log: Any, failure: str
) -> None:
    """The stored trail, `trilha logs` lines and the process log each hold an ERROR line
    naming the request and the reason: the status it answered, the refused connection,
    the timeout."""
    configure(LoggingConfig(level="INFO", format="json"), stream=process_log.stream)
    with ExitStack() as stack:
        url, published = http_server.url, flow()
        if failure == "answer":
            http_server.route("GET", "/customers/42", status=503)
            reason = "answered 503"
        elif failure == "timeout":
            http_server.route("GET", "/customers/42", body={}, delay=3)
            published, reason = flow(timeout=0.5), "took longer than 0.5s"
        else:  # a port held bound, not listening: the connection is refused
            held = stack.enter_context(refused_port())
            url, reason = f"http://127.0.0.1:{held.getsockname()[1]}", "connection"
        cause = [f"GET {url}/customers/42", reason]
        h = make_harness(Config(dependencies={"crm": DependencyConfig(base_url=url)}))
        await h.publish(published)
        ex = await h.start("call")
        await h.settle()
    done = await h.get(ex.id)
    assert done.status is S.FAILED

    records = await h.store.logs(ex.id)
    failed = [r for r in records if r.message == "node.failed"]
    assert len(failed) == 1
    message = failed[0].context["error"]["message"]
    assert [part for part in cause if part not in message] == [], message
    assert done.error is not None
    assert [part for part in cause if part not in str(done.error["message"])] == []

    printed = [line for line in lines(records, Identity.of(done)) if line["level"] == "ERROR"]
    said = " ".join(str(line["context"].get("error")) for line in printed)
    assert [part for part in cause if part not in said] == [], said

    echoed = [
        line
        for line in process_log.lines()
        if line["executionId"] == ex.id and line["message"] == "node.failed"
    ]
    assert len(echoed) == 1
    assert [part for part in cause if part not in echoed[0]["context"]["error"]["message"]] == []
