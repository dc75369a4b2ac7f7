"""Calls that change things are made once (issue 17 §1), through the real engine, a real
SQLite file and a real booking service on 127.0.0.1 that counts the bookings it applies
per idempotency key: answers slower than the node's timeout, connections cut after the
request was read, refused connections, 503s, a renamed or absent header, the key in a
body, and a GET that is retried whatever happened."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from effects_service import BookingService, booking_service, refused_port
from trilha.config import Config, DependencyConfig
from trilha.core.states import ExecutionStatus
from trilha.errors import NodeError
from trilha.resilience.dependencies import DependencyClient, Target

S = ExecutionStatus
Harness = Any


def book(**extra: Any) -> dict[str, Any]:
    node = {
        "id": "book",
        "type": "http",
        "dependency": "bookings",
        "method": "POST",
        "url": "/bookings",
        "timeoutSeconds": 0.8,
        "body": {"slot": "{{slot}}"},
        "saveAs": "booking",
        "retry": {"maxAttempts": 3, "initialIntervalSeconds": 1, "jitter": False},
        "fallback": {"next": "sorry"},
        "next": "done",
    }
    return node | extra


def booking_flow(**extra: Any) -> dict[str, Any]:
    return {
        "id": "booking",
        "start": "book",
        "nodes": [
            book(**extra),
            {"id": "done", "type": "end", "text": "Booked: {{booking.booking}}"},
            {"id": "sorry", "type": "end", "text": "We could not confirm your booking."},
        ],
    }


def harness_for(make_harness: Callable[..., Harness], url: str, **dep: Any) -> Harness:
    return make_harness(Config(dependencies={"bookings": DependencyConfig(base_url=url, **dep)}))


async def run_out(h: Harness, execution_id: str, rounds: int = 10) -> Any:
    """Let the fake clock pass the retry backoffs until the execution ends."""
    for _ in range(rounds):
        await h.settle()
        ex = await h.get(execution_id)
        if ex.status.terminal:
            return ex
        h.clock.advance(30)
    return await h.get(execution_id)


async def bot(h: Harness, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def trail(h: Harness, execution_id: str) -> list[Any]:
    return list(await h.store.logs(execution_id))


async def booked(make_harness: Callable[..., Harness], service: BookingService, **kw: Any) -> Any:
    """Publish the booking flow on ``service`` and run one contact through it."""
    dep = {k: kw.pop(k) for k in ("idempotent", "idempotency_header") if k in kw}
    h = harness_for(make_harness, service.url, **dep)
    await h.publish(booking_flow(**kw))
    ex = await h.start("booking", variables={"slot": "mon-10h"})
    return h, await run_out(h, ex.id)


# ------------------------------------------------------------------- answers lost after sending


@pytest.mark.parametrize("lost", ["slow", "cut"])
async def test_a_lost_answer_to_a_post_is_not_sent_again(
    make_harness: Callable[..., Harness], lost: str
) -> None:
    """The booking was applied and its answer lost (too slow / connection cut): without
    ``idempotent = true`` the POST is not repeated; the node takes its fallback with kind
    ``ambiguous`` and the trail says the booking may have been made."""
    with booking_service(script=[lost]) as service:
        h, ex = await booked(make_harness, service)
        service.wait_applied(1)
        await asyncio.sleep(0.2)  # a repeat, were there one, would have arrived by now
        assert service.total_applied() == 1
        assert len(service.requests) == 1
    assert ex.status is S.COMPLETED and ex.current_node_id == "sorry"
    assert ex.attempts == 0
    assert await bot(h, ex.id) == ["We could not confirm your booking."]
    assert ex.meta["firstError"]["kind"] == "ambiguous"
    lines = await trail(h, ex.id)
    maybe = [r for r in lines if r.message == "node.call_maybe_applied"]
    assert len(maybe) == 1 and maybe[0].level == "WARN"
    key = service.requests[0]["key"]
    assert maybe[0].context["idempotencyKey"] == key
    assert maybe[0].context["request"] == f"POST {service.url}/bookings"
    assert maybe[0].context["cause"] == ("timeout" if lost == "slow" else "connection")
    failed = [r for r in lines if r.message == "node.failed"]
    assert failed and failed[0].context["error"]["kind"] == "ambiguous"
    assert not [r for r in lines if r.message == "node.retry_scheduled"]
    steps = await h.store.checkpoints(ex.id)
    assert steps[0].node_id == "book" and steps[0].error["kind"] == "ambiguous"


@pytest.mark.parametrize("lost", ["slow", "cut"])
async def test_an_idempotent_dependency_gets_the_post_again_with_the_same_key(
    make_harness: Callable[..., Harness], lost: str
) -> None:
    """With ``idempotent = true`` the lost POST is retried with the same key; the service
    applies the booking once and the contact is served."""
    with booking_service(script=[lost], dedupe=True) as service:
        h, ex = await booked(make_harness, service, idempotent=True)
        assert service.total_applied() == 1
        assert len(service.requests) == 2
    first, second = service.sent_keys()
    assert first is not None and first == second
    assert ex.status is S.COMPLETED and ex.current_node_id == "done"
    assert await bot(h, ex.id) == [f"Booked: B-{first}"]
    assert not [r for r in await trail(h, ex.id) if r.message == "node.call_maybe_applied"]


async def test_a_node_may_say_a_repeat_does_no_harm(make_harness: Callable[..., Harness]) -> None:
    """``"retryUnsafe": true`` retries the lost POST although the dependency does not
    declare itself idempotent (here it does not dedupe: the author accepted a repeat)."""
    with booking_service(script=["slow"]) as service:
        _, ex = await booked(make_harness, service, retryUnsafe=True)
        assert len(service.requests) == 2
        assert service.sent_keys()[0] == service.sent_keys()[1]
    assert ex.current_node_id == "done"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "GET"])
async def test_a_lost_answer_to_an_idempotent_method_is_retried(
    make_harness: Callable[..., Harness], method: str
) -> None:
    """PUT, DELETE and GET are idempotent by HTTP semantics: a timeout retries them as
    before, with the same key, without ``idempotent`` or ``retryUnsafe``."""
    with booking_service(script=["slow"]) as service:
        _, ex = await booked(make_harness, service, method=method)
        keys = service.sent_keys()
    assert [r["method"] for r in service.requests] == [method, method]
    assert len(keys) == 2 and keys[0] == keys[1] == f"{ex.id}:1"
    assert ex.current_node_id == "done"


# ------------------------------------------------------------------- nothing sent / not applied


async def test_a_refused_connection_is_retried_with_the_same_key(
    make_harness: Callable[..., Harness],
) -> None:
    """Nothing was sent (connection refused): the POST is retried as before, even without
    ``idempotent``; the service, up by the retry, applies it once."""
    with refused_port() as held:
        h = harness_for(make_harness, f"http://127.0.0.1:{held.getsockname()[1]}")
        await h.publish(booking_flow())
        ex = await h.start("booking", variables={"slot": "mon-10h"})
        await h.settle()
        waiting = await h.get(ex.id)
        assert waiting.status is S.RECOVERING and waiting.attempts == 1
        assert waiting.error is not None and waiting.error["kind"] == "connection"
        with booking_service(held) as service:
            ex = await run_out(h, ex.id)
            assert service.total_applied() == 1
            (key,) = service.sent_keys()
    assert ex.current_node_id == "done"
    assert key == f"{ex.id}:1"
    assert not [r for r in await trail(h, ex.id) if r.message == "node.call_maybe_applied"]


@pytest.mark.parametrize("status", ["503", "429"])
async def test_an_answer_saying_not_applied_is_retried(
    make_harness: Callable[..., Harness], status: str
) -> None:
    """503 and 429 say the booking was not made: retried, each time with the same key."""
    with booking_service(script=[status, status]) as service:
        h, ex = await booked(make_harness, service)
        assert service.total_applied() == 1
        keys = service.sent_keys()
    assert len(keys) == 3 and len(set(keys)) == 1
    assert ex.current_node_id == "done"
    assert await bot(h, ex.id) == [f"Booked: B-{keys[0]}"]


# ------------------------------------------------------------------- the key and its header


async def test_the_key_is_in_the_default_header_and_per_step(
    make_harness: Callable[..., Harness],
) -> None:
    """``Idempotency-Key: <execution>:<seq>``; another execution, another key."""
    with booking_service() as service:
        h = harness_for(make_harness, service.url)
        await h.publish(booking_flow())
        one = await h.start("booking", "conv-1", variables={"slot": "a"})
        two = await h.start("booking", "conv-2", variables={"slot": "b"})
        await h.settle()
        keys = sorted(str(k) for k in service.sent_keys())
    assert keys == sorted([f"{one.id}:1", f"{two.id}:1"])


async def test_the_header_may_be_renamed(make_harness: Callable[..., Harness]) -> None:
    with booking_service(key_header="X-Request-Id") as service:
        _, ex = await booked(make_harness, service, idempotency_header="X-Request-Id")
        (request,) = service.requests
    assert request["headers"]["x-request-id"] == f"{ex.id}:1"
    assert "idempotency-key" not in request["headers"]


async def test_the_header_may_be_turned_off_and_the_key_put_in_the_body(
    make_harness: Callable[..., Harness],
) -> None:
    """``idempotency_header = ""`` sends no header; ``sys.idempotencyKey`` puts the same key
    in the body, and the service dedupes by it across a lost answer."""
    with booking_service(script=["slow"], dedupe=True) as service:
        body = {
            "slot": "{{slot}}",
            "ref": "{{sys.idempotencyKey}}",
            "note": "k={{sys.idempotencyKey}}",
        }
        _, ex = await booked(
            make_harness, service, idempotent=True, idempotency_header="", body=body
        )
        assert service.total_applied() == 1
        first, second = service.requests
    assert "idempotency-key" not in first["headers"]
    assert first["body"]["ref"] == second["body"]["ref"] == f"{ex.id}:1"
    assert first["body"]["note"] == f"k={ex.id}:1"
    assert ex.current_node_id == "done"


async def test_a_flow_variable_named_sys_cannot_forge_trilhas_own(
    make_harness: Callable[..., Harness],
) -> None:
    """``sys`` is trilha's read-only namespace: a start variable of that name neither hides
    the step's key nor adds values beside trilha's."""
    with booking_service() as service:
        h = harness_for(make_harness, service.url)
        body = {"ref": "{{sys.idempotencyKey}}", "x": "{{sys.x}}", "id": "{{sys.executionId}}"}
        await h.publish(booking_flow(body=body))
        ex = await h.start(
            "booking", variables={"sys": {"idempotencyKey": "mine", "x": 1, "executionId": "e"}}
        )
        await h.settle()
        (request,) = service.requests
    assert request["body"] == {"ref": f"{ex.id}:1", "x": None, "id": ex.id}


async def test_entering_the_node_again_is_a_new_call_with_a_new_key(
    make_harness: Callable[..., Harness],
) -> None:
    """A loop through the node books twice, on purpose: each entry has its own key."""
    with booking_service(dedupe=True) as service:
        h = harness_for(make_harness, service.url)
        flow = booking_flow(next="again")
        flow["nodes"].append(
            {
                "id": "again",
                "type": "condition",
                "branches": [{"when": "count < 1", "next": "inc"}],
                "default": "done",
            }
        )
        flow["nodes"].append(
            {"id": "inc", "type": "set", "expressions": {"count": "count + 1"}, "next": "book"}
        )
        await h.publish(flow)
        ex = await h.start("booking", variables={"slot": "a", "count": 0})
        ex = await run_out(h, ex.id)
        keys = service.sent_keys()
    assert ex.current_node_id == "done", ex.error
    assert len(keys) == 2 and keys[0] != keys[1]
    assert service.total_applied() == 2


# ------------------------------------------------------------------- what the client tells


def target(url: str, timeout: float = 0.8) -> Target:
    return Target(url=url, timeout=timeout, max_bytes=65_536, allowed_hosts=("127.0.0.1",))


async def failure(url: str) -> dict[str, Any]:
    """The details of the NodeError a POST to ``url`` fails with (only they outlive the
    call: the exception's traceback would keep its connection alive)."""
    client = DependencyClient()
    try:
        with pytest.raises(NodeError) as err:
            await client.send(target(url), "POST", json={"a": 1}, idempotency_key="k:1")
    finally:
        await client.aclose()
    return dict(err.value.details)


async def test_nothing_was_sent_when_the_connection_is_refused() -> None:
    with refused_port() as held:
        details = await failure(f"http://127.0.0.1:{held.getsockname()[1]}/bookings")
    assert details["kind"] == "connection" and details["sent"] is False


async def test_nothing_was_sent_when_the_name_does_not_resolve() -> None:
    client = DependencyClient()
    try:
        with pytest.raises(NodeError) as err:
            await client.send(
                Target("http://no-such-host.invalid/b", 2.0, 1024, ("no-such-host.invalid",)),
                "POST",
                idempotency_key="k:1",
            )
    finally:
        await client.aclose()
    assert err.value.details["kind"] == "connection"
    assert err.value.details.get("sent") is not True


async def test_nothing_was_sent_when_connecting_hangs() -> None:
    """A whole-call timeout before the request was written (the server's accept queue is
    full, so the connection never completes): a timeout, and the request not sent."""
    with socket.socket() as listener, contextlib.ExitStack() as stack:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: the queue fills and later SYNs are dropped
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        await asyncio.sleep(0.1)
        details = await failure(f"http://127.0.0.1:{port}/bookings")
    assert details["kind"] == "timeout" and details["sent"] is False


@pytest.mark.parametrize(("lost", "kind"), [("slow", "timeout"), ("cut", "connection")])
async def test_the_request_was_sent_when_its_answer_is_lost(lost: str, kind: str) -> None:
    with booking_service(script=[lost]) as service:
        details = await failure(f"{service.url}/bookings")
        service.wait_applied(1)  # a loaded machine may read it late: applied all the same
        assert service.total_applied() == 1
        (request,) = service.requests
    assert details["kind"] == kind and details["sent"] is True
    assert request["headers"]["idempotency-key"] == "k:1"


async def test_a_node_header_of_the_same_name_wins() -> None:
    """The flow author's own header is what goes out (an explicit choice)."""
    with booking_service() as service:
        client = DependencyClient()
        try:
            await client.send(
                target(f"{service.url}/bookings"),
                "POST",
                headers={"Idempotency-Key": "mine"},
                idempotency_key="k:1",
            )
        finally:
            await client.aclose()
        (request,) = service.requests
    assert request["headers"]["idempotency-key"] == "mine"


async def test_the_trail_line_masks_the_request(make_harness: Callable[..., Harness]) -> None:
    """The request in ``node.call_maybe_applied`` is masked like every log line (a CPF in
    the path), while the service got it whole."""
    with booking_service(script=["slow"]) as service:
        h = harness_for(make_harness, service.url)
        await h.publish(booking_flow(url="/bookings/{{cpf}}"))
        ex = await h.start("booking", variables={"slot": "a", "cpf": "12345678909"})
        ex = await run_out(h, ex.id)
        (request,) = service.requests
    assert request["path"] == "/bookings/12345678909"
    (line,) = [r for r in await trail(h, ex.id) if r.message == "node.call_maybe_applied"]
    assert "12345678909" not in str(line.context)
    assert line.context["request"].startswith(f"POST {service.url}/bookings/")


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_worker_lost_mid_call_leaves_the_doubt_to_the_next(
    make_harness: Callable[..., Harness], idempotent: bool
) -> None:
    """A worker stopped during the POST (its task cancelled: nothing after the request is
    committed) and its lease run out: the next worker finds the attempt begun. An
    idempotent service gets the POST again with the same key; another is not asked."""
    with booking_service(script=["slow"], slow_seconds=1.0, dedupe=True) as service:
        first = harness_for(make_harness, service.url, idempotent=idempotent)
        await first.publish(booking_flow(timeoutSeconds=5))
        ex = await first.start("booking", variables={"slot": "a"})
        running = asyncio.ensure_future(first.settle())
        for _ in range(3000):  # until the request is at the service
            if service.requests:
                break
            await asyncio.sleep(0.01)
        assert service.requests, "the POST never reached the service"
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        first.clock.advance(first.engine.config.engine.lease_seconds + 60)
        second = make_harness(
            Config(
                dependencies={
                    "bookings": DependencyConfig(base_url=service.url, idempotent=idempotent)
                }
            ),
            worker_id="w2",
        )
        ex = await run_out(second, ex.id)
        assert service.total_applied() == 1
        keys = service.sent_keys()
    assert keys == [f"{ex.id}:1"] * (2 if idempotent else 1)
    lines = await trail(second, ex.id)
    maybe = [r for r in lines if r.message == "node.call_maybe_applied"]
    if idempotent:
        assert ex.current_node_id == "done" and not maybe
    else:
        assert ex.current_node_id == "sorry"
        assert [m.context["cause"] for m in maybe] == ["interrupted"]
