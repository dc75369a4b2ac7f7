"""Store contract: what the HTTP API keeps and reads, through the protocol only.

API keys (stored by hash, revoked once), responses remembered for an
``Idempotency-Key`` (the first writer wins, however many retries race), the
execution listing (filters, newest first, keyset pages that add up to one
listing, the stuck filter next to :meth:`Store.find_stuck`), every version of a
flow, and the global trail that live event streams page through by id.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trilha.core.execution import Execution, LogRecord
from trilha.core.states import ExecutionStatus
from trilha.errors import StoreError
from trilha.store.base import (
    ApiKey,
    ExecutionFilter,
    Store,
    StoredResponse,
    TrailEvent,
)

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus
F = ExecutionFilter


def _key(key_id: str, **fields: Any) -> ApiKey:
    values: dict[str, Any] = {
        "institution_id": "inst-1",
        "role": "operator",
        "secret_hash": "ab" * 32,
        "created_at": T0,
        "name": f"key {key_id}",
    }
    return ApiKey(key_id=key_id, **(values | fields))


def _response(status: int = 201, body: Any = None, *, at: float = T0) -> StoredResponse:
    return StoredResponse(
        request_hash="h" * 64,
        status=status,
        body={"executionId": "ex-1", "status": "running"} if body is None else body,
        created_at=at,
    )


def _ids(executions: list[Execution]) -> list[str]:
    return [ex.id for ex in executions]


def _newest_first(executions: list[Execution]) -> list[str]:
    return [ex.id for ex in sorted(executions, key=lambda e: (e.created_at, e.id), reverse=True)]


async def _all_pages(store: Store, page: int, where: ExecutionFilter | None) -> list[Execution]:
    """Walk a listing page by page the way the API does, from each page's last row."""
    listed: list[Execution] = []
    before: tuple[float, str] | None = None
    while True:
        got = await store.list_executions(limit=page, where=where, before=before)
        assert len(got) <= page
        listed += got
        if len(got) < page:
            return listed
        before = (got[-1].created_at, got[-1].id)


async def _note(store: Store, ex: Execution, reason: str, *, now: float = T0) -> None:
    """One more trail line for ``ex`` (the sweeper's note, the simplest writer)."""
    await store.reschedule(ex.id, wake_at=now, reason=reason, now=now)


async def _stream(store: Store, after_id: int, page: int, **only: Any) -> list[TrailEvent]:
    """Read the trail the way a live stream does: from ``after_id``, page by page."""
    seen: list[TrailEvent] = []
    while True:
        got = await store.trail_since(after_id, limit=page, **only)
        assert len(got) <= page
        seen += got
        if not got:
            return seen
        after_id = got[-1].id


# ------------------------------------------------------------------------------ API keys


async def test_api_key_round_trip(store: Store) -> None:
    """A created key reads back exactly; an unknown id reads as None."""
    key = _key("k-1", role="admin", name=None)
    await store.create_api_key(key)
    assert await store.get_api_key("k-1") == key
    assert await store.get_api_key("nope") is None


async def test_list_api_keys_oldest_first(store: Store) -> None:
    """Every key, revoked or not, oldest first."""
    assert await store.list_api_keys() == []
    keys = [
        _key("k-b", created_at=T0 + 1, role="viewer"),
        _key("k-a", created_at=T0 + 2, institution_id="inst-2"),
        _key("k-c", created_at=T0, revoked_at=T0 + 5),
    ]
    for key in keys:
        await store.create_api_key(key)
    assert await store.list_api_keys() == sorted(keys, key=lambda k: k.created_at)


async def test_revoke_api_key_once(store: Store) -> None:
    """Revoking stamps the key once: a second revocation and an unknown key give False,
    and the first revocation time stays."""
    await store.create_api_key(_key("k-1"))
    await store.create_api_key(_key("k-2"))
    assert await store.revoke_api_key("k-1", now=T0 + 10) is True
    assert await store.revoke_api_key("k-1", now=T0 + 20) is False
    assert await store.revoke_api_key("ghost", now=T0 + 20) is False
    revoked = await store.get_api_key("k-1")
    assert revoked is not None
    assert revoked.revoked_at == T0 + 10
    assert revoked == _key("k-1", revoked_at=T0 + 10)
    assert await store.get_api_key("k-2") == _key("k-2")


async def test_a_key_id_is_never_overwritten(store: Store) -> None:
    """Creating a key under an id in use fails and leaves the stored key as it was."""
    await store.create_api_key(_key("k-1"))
    with pytest.raises(StoreError):
        await store.create_api_key(_key("k-1", role="admin", secret_hash="cd" * 32))
    assert await store.get_api_key("k-1") == _key("k-1")


# ------------------------------------------------------------------------- idempotency


async def test_remembered_response_is_none_when_absent(store: Store) -> None:
    assert await store.remembered_response("inst-1 POST /v1/executions", "k") is None


@pytest.mark.parametrize(
    "body",
    [
        {"executionId": "ex-1", "nested": {"list": [1, 2.5, None, True], "text": "olá"}},
        [1, "two", {"three": 3}],
        "plain text",
        None,
    ],
    ids=["object", "list", "string", "null"],
)
async def test_remember_response_round_trip(store: Store, body: Any) -> None:
    """The kept response reads back as stored, whatever JSON its body is."""
    response = StoredResponse("h" * 64, 202, body, T0)
    assert await store.remember_response("scope", "key-1", response) == response
    assert await store.remembered_response("scope", "key-1") == response


async def test_first_writer_wins(store: Store) -> None:
    """A second response for the same key is not kept: the first one is returned."""
    first = _response(201, {"executionId": "ex-1"})
    second = _response(409, {"error": "busy"}, at=T0 + 1)
    assert await store.remember_response("scope", "key-1", first) == first
    assert await store.remember_response("scope", "key-1", second) == first
    assert await store.remembered_response("scope", "key-1") == first


async def test_keys_are_per_scope(store: Store) -> None:
    """The same key in two scopes (tenants, routes) is two records."""
    a, b = _response(201, {"n": 1}), _response(202, {"n": 2})
    assert await store.remember_response("inst-1 POST /a", "key", a) == a
    assert await store.remember_response("inst-2 POST /a", "key", b) == b
    assert await store.remembered_response("inst-1 POST /a", "key") == a
    assert await store.remembered_response("inst-2 POST /a", "key") == b
    assert await store.remembered_response("inst-3 POST /a", "key") is None


async def test_concurrent_retries_agree(store: Store) -> None:
    """Racing retries with different responses all get the same one back."""
    responses = [_response(200 + i, {"attempt": i}) for i in range(8)]
    kept = await asyncio.gather(*(store.remember_response("s", "k", r) for r in responses))
    assert kept[0] in responses
    assert all(k == kept[0] for k in kept)
    assert await store.remembered_response("s", "k") == kept[0]


async def test_concurrent_retries_on_two_handles_agree(store: Store, backend: Backend) -> None:
    """Two API processes (two handles on one database) racing: both keep the same one."""
    other = await backend.open()
    a, b = _response(201, {"by": "a"}), _response(201, {"by": "b"})
    kept = await asyncio.gather(
        store.remember_response("s", "k", a), other.remember_response("s", "k", b)
    )
    assert kept[0] == kept[1]
    assert kept[0] in (a, b)
    assert await other.remembered_response("s", "k") == kept[0]


async def test_purge_responses_forgets_only_older_records(store: Store) -> None:
    """Records created before the cutoff go (and are counted); the rest stay."""
    for i, at in enumerate((T0 - 20, T0 - 1, T0, T0 + 5)):
        await store.remember_response("s", f"k{i}", _response(at=at))
    assert await store.purge_responses(T0) == 2
    assert await store.remembered_response("s", "k0") is None
    assert await store.remembered_response("s", "k1") is None
    assert await store.remembered_response("s", "k2") == _response(at=T0)
    assert await store.remembered_response("s", "k3") == _response(at=T0 + 5)
    assert await store.purge_responses(T0) == 0
    # a forgotten key is free again
    fresh = _response(204, {"again": True}, at=T0 + 9)
    assert await store.remember_response("s", "k0", fresh) == fresh


# ---------------------------------------------------------------------------- flows


async def test_flow_versions_oldest_first(store: Store) -> None:
    """Every stored version of the flow, oldest first; other flows are not mixed in."""
    assert await store.flow_versions("onboarding") == []
    flow = {"id": "onboarding", "name": "v1", "start": "a", "nodes": [{"id": "a", "type": "end"}]}
    for i, name in enumerate(("v1", "v2", "v2", "v3")):
        await store.publish_flow("onboarding", flow | {"name": name}, T0 + i)
    await store.publish_flow("other", flow | {"id": "other"}, T0)
    versions = await store.flow_versions("onboarding")
    assert [(v.version, v.definition["name"]) for v in versions] == [
        (1, "v1"),
        (2, "v2"),
        (3, "v3"),
    ]
    assert versions == [await store.get_flow("onboarding", v) for v in (1, 2, 3)]


# ----------------------------------------------------------------------- list_executions


async def test_list_newest_first_ties_by_id(store: Store, make: Make) -> None:
    """Newest first; executions created at the same instant come by id, descending."""
    made = [
        await make.create(store, created_at=T0 + t, id=ident)
        for t, ident in ((1, "b"), (0, "z"), (1, "a"), (2, "m"), (1, "c"))
    ]
    listed = await store.list_executions()
    assert _ids(listed) == ["m", "c", "b", "a", "z"]
    assert _ids(listed) == _newest_first(made)
    assert _ids(await store.list_executions(limit=2)) == ["m", "c"]
    assert await store.list_executions(limit=0) == []


async def test_list_reads_back_the_stored_executions(store: Store, make: Make) -> None:
    """A listed execution is the stored one, field for field."""
    made = [await make.create(store, created_at=T0 + i) for i in range(3)]
    assert await store.list_executions() == [
        await store.get_execution(ex.id) for ex in reversed(made)
    ]


async def test_list_filters(store: Store, make: Make) -> None:
    """Each filter narrows on its own column; filters combine with AND."""
    rows = [
        ("inst-1", S.COMPLETED, "onboarding", "conv-a", "ana"),
        ("inst-1", S.WAITING_INPUT, "onboarding", "conv-b", "ana"),
        ("inst-1", S.RUNNING, "billing", "conv-a", "bia"),
        ("inst-2", S.RUNNING, "billing", "conv-a", "ana"),
        ("inst-2", S.COMPLETED, "onboarding", "conv-c", "caio"),
    ]
    made: list[Execution] = []
    for i, (inst, status, flow, conv, contact) in enumerate(rows):
        made.append(
            await make.create(
                store,
                institution=inst,
                status=status,
                flow_id=flow,
                conversation=conv,
                contact_id=contact,
                created_at=T0 + i,
            )
        )

    async def listed(**where: Any) -> list[str]:
        return _ids(await store.list_executions(where=F(**where)))

    def expected(keep: Any) -> list[str]:
        return _newest_first([ex for ex in made if keep(ex)])

    assert await listed() == expected(lambda ex: True)
    assert await listed(institution_id="inst-1") == expected(
        lambda ex: ex.institution_id == "inst-1"
    )
    assert await listed(status="running") == expected(lambda ex: ex.status is S.RUNNING)
    assert await listed(flow_id="billing") == expected(lambda ex: ex.flow_id == "billing")
    assert await listed(conversation_id="conv-a") == expected(
        lambda ex: ex.conversation_id == "conv-a"
    )
    assert await listed(contact_id="ana") == expected(lambda ex: ex.contact_id == "ana")
    assert await listed(institution_id="inst-1", contact_id="ana", status="waiting_input") == [
        made[1].id
    ]
    assert await listed(institution_id="inst-2", flow_id="billing", conversation_id="conv-a") == [
        made[3].id
    ]
    assert await listed(institution_id="inst-2", status="waiting_input") == []
    assert await listed(institution_id="inst-9") == []
    assert await listed(status="no-such-status") == []


async def test_keyset_pages_stay_stable_while_executions_arrive(store: Store, make: Make) -> None:
    """Executions created after the first page do not shift the next pages: nothing is
    repeated, nothing skipped."""
    old = [await make.create(store, created_at=T0 + i) for i in range(7)]
    first = await store.list_executions(limit=3)
    for i in range(5):
        await make.create(store, created_at=T0 + 100 + i)
    before = (first[-1].created_at, first[-1].id)
    rest = await store.list_executions(limit=100, before=before)
    assert _ids(first) + _ids(rest) == _newest_first(old)


async def test_before_is_exclusive_and_may_name_a_missing_row(store: Store, make: Make) -> None:
    """``before`` is a position, not a row: the execution it names is not listed again,
    and a position between rows (a deleted or filtered-out one) works the same."""
    made = [await make.create(store, created_at=T0 + i, id=f"e{i}") for i in range(4)]
    assert _ids(await store.list_executions(before=(T0 + 2, "e2"))) == ["e1", "e0"]
    assert _ids(await store.list_executions(before=(T0 + 2, "e1"))) == ["e1", "e0"]
    assert _ids(await store.list_executions(before=(T0 + 2, "e3"))) == ["e2", "e1", "e0"]
    assert _ids(await store.list_executions(before=(T0 + 9, ""))) == _newest_first(made)
    assert await store.list_executions(before=(T0, "e0")) == []


_runs = itertools.count()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from(["a", "b"])), min_size=0, max_size=14
    ),
    page=st.integers(1, 6),
    by_flow=st.booleans(),
)
async def test_pages_add_up_to_one_listing(
    store: Store, make: Make, rows: list[tuple[int, str]], page: int, by_flow: bool
) -> None:
    """Walking any listing page by page (from each page's last row) gives exactly the
    unpaged listing: same executions, same order, none twice, ties on the creation
    time included. Each example lists its own institution on the shared store."""
    institution = f"prop-{next(_runs)}"
    made = [
        await make.create(store, institution=institution, created_at=T0 + t, flow_id=flow)
        for t, flow in rows
    ]
    where = F(institution_id=institution, flow_id="a" if by_flow else None)
    whole = await store.list_executions(limit=1000, where=where)
    expected = _newest_first([ex for ex in made if not by_flow or ex.flow_id == "a"])
    assert _ids(whole) == expected
    paged = await _all_pages(store, page, where)
    assert paged == whole


async def test_stuck_filter(store: Store, make: Make) -> None:
    """``stuck_before``: active, not paused, no lease live at the cutoff, and no wake
    time or a wake time or due time before the cutoff (strictly)."""
    cutoff = T0 + 100

    async def made(name: str, **fields: Any) -> Execution:
        return await make.create(store, id=name, **fields)

    await made("no-wake", wake_at=None)
    await made("asleep", wake_at=T0 + 500)
    await made("at-cutoff", wake_at=cutoff)
    await made("input-overdue", status=S.WAITING_INPUT, wake_at=T0 + 50, due_at=T0 + 50)
    await made("input-pending", status=S.WAITING_INPUT, wake_at=T0 + 200, due_at=T0 + 200)
    await made(
        "delay-lost",
        status=S.WAITING_DELAY,
        waiting_for="delay",
        wake_at=T0 + 900,
        due_at=T0 + 50,
    )
    await made("paused", status=S.PAUSED, paused_from=S.RUNNING, wake_at=None)
    await made("ended", status=S.COMPLETED, wake_at=None)
    await made("failed", status=S.FAILED, wake_at=T0)
    await made("other-tenant", institution="inst-2", wake_at=None)
    leased = await made("leased", wake_at=T0)
    await make.claim(store, leased, now=T0)  # the lease runs to T0 + LEASE

    async def stuck(cut: float, **where: Any) -> set[str]:
        return set(_ids(await store.list_executions(where=F(stuck_before=cut, **where))))

    expected = {"no-wake", "input-overdue", "delay-lost", "other-tenant", "leased"}
    assert await stuck(cutoff) == expected
    # a lease still live at the cutoff keeps its execution out
    assert "leased" not in await stuck(T0 + LEASE - 1)
    assert await stuck(cutoff, institution_id="inst-1") == expected - {"other-tenant"}
    assert await stuck(cutoff, status="waiting_input") == {"input-overdue"}
    assert await stuck(cutoff, status="completed") == set()
    listed = await store.list_executions(where=F(stuck_before=cutoff))
    assert _ids(listed) == _newest_first(listed)


async def test_stuck_filter_covers_find_stuck(store: Store, make: Make) -> None:
    """With ``now - grace`` as the cutoff, whatever find_stuck reports (and no lease ran
    out in between) is listed as stuck too."""
    await make.create(store, wake_at=None)
    await make.create(
        store, status=S.WAITING_DELAY, waiting_for="delay", wake_at=T0 + 900, due_at=T0
    )
    await make.create(store, status=S.WAITING_INPUT, wake_at=T0 + 40, due_at=T0 + 40)
    await make.create(store, wake_at=T0 + 500)
    now, grace = T0 + 60, 30.0
    found = {s.execution_id for s in await store.find_stuck(now, grace_seconds=grace)}
    listed = set(_ids(await store.list_executions(where=F(stuck_before=now - grace))))
    assert found
    assert found <= listed


async def test_stuck_pages_add_up(store: Store, make: Make) -> None:
    """The stuck filter pages like any other listing."""
    for i in range(7):
        await make.create(store, wake_at=None, created_at=T0 + i % 3)
        await make.create(store, wake_at=T0 + 10_000, created_at=T0 + i % 3)
    where = F(stuck_before=T0 + 100)
    whole = await store.list_executions(where=where)
    assert len(whole) == 7
    assert await _all_pages(store, 2, where) == whole


# ------------------------------------------------------------------------------- trail


async def test_empty_trail(store: Store) -> None:
    assert await store.last_trail_id() == 0
    assert await store.trail_since(0) == []


async def test_trail_since_gives_every_line_in_order(store: Store, make: Make) -> None:
    """From 0: every stored line, ids strictly increasing, each with its execution's
    tenant, flow and current status; per execution, the same lines as ``logs``."""
    a = await make.create(store, institution="inst-1", flow_id="onboarding")
    b = await make.create(store, institution="inst-2", flow_id="billing", status=S.WAITING_INPUT)
    await _note(store, a, "one")
    await _note(store, b, "two")
    await _note(store, a, "three")

    events = await store.trail_since(0)
    ids = [e.id for e in events]
    assert len(events) == 5
    assert ids == sorted(set(ids))
    assert ids[-1] == await store.last_trail_id()
    assert [e.record.execution_id for e in events] == [a.id, b.id, a.id, b.id, a.id]
    for ex in (a, b):
        mine = [e for e in events if e.record.execution_id == ex.id]
        assert [e.record for e in mine] == await store.logs(ex.id)
        assert {(e.institution_id, e.flow_id, e.status) for e in mine} == {
            (ex.institution_id, ex.flow_id, ex.status.value)
        }
    assert [e.record.context.get("reason") for e in events[2:]] == ["one", "two", "three"]


async def test_trail_since_after_id_and_limit(store: Store, make: Make) -> None:
    """Only lines above ``after_id``, oldest first, at most ``limit``."""
    ex = await make.create(store)
    for i in range(6):
        await _note(store, ex, f"n{i}")
    events = await store.trail_since(0)
    ids = [e.id for e in events]
    assert await store.trail_since(ids[2]) == events[3:]
    assert await store.trail_since(ids[2], limit=2) == events[3:5]
    assert await store.trail_since(ids[-1]) == []
    assert await store.trail_since(0, limit=1) == events[:1]


async def test_trail_since_for_one_execution(store: Store, make: Make) -> None:
    """``execution_id`` keeps that execution's lines only, paged the same way."""
    a, b = await make.create(store), await make.create(store)
    for i in range(4):
        await _note(store, a, f"a{i}")
        await _note(store, b, f"b{i}")
    only_a = await store.trail_since(0, execution_id=a.id)
    assert [e.record for e in only_a] == await store.logs(a.id)
    assert await _stream(store, 0, 2, execution_id=a.id) == only_a
    assert await store.trail_since(only_a[1].id, execution_id=a.id, limit=2) == only_a[2:4]
    assert await store.trail_since(0, execution_id="ghost") == []


async def test_trail_since_for_one_institution(store: Store, make: Make) -> None:
    """``institution_id`` keeps lines of that tenant's executions only (and combines
    with ``execution_id``: another tenant's execution gives nothing)."""
    mine = [await make.create(store, institution="inst-1") for _ in range(2)]
    theirs = await make.create(store, institution="inst-2")
    for ex in (*mine, theirs, *mine):
        await _note(store, ex, "x")
    everything = await store.trail_since(0)
    expected = [e for e in everything if e.institution_id == "inst-1"]
    assert len(expected) == 6
    assert await store.trail_since(0, institution_id="inst-1") == expected
    assert await _stream(store, 0, 4, institution_id="inst-1") == expected
    assert await store.trail_since(0, institution_id="inst-1", execution_id=theirs.id) == []
    assert await store.trail_since(0, institution_id="inst-9") == []


async def test_a_resumed_stream_loses_and_repeats_nothing(store: Store, make: Make) -> None:
    """A stream that reads a page, sees new lines arrive, and resumes from the last id
    it saw ends up with every line exactly once, in order."""
    exs = [await make.create(store, institution=f"inst-{i % 2}") for i in range(3)]
    seen: list[TrailEvent] = []
    after = 0
    for round_ in range(6):
        for ex in exs:
            await _note(store, ex, f"r{round_}")
        page = await store.trail_since(after, limit=4)
        seen += page
        if page:
            after = page[-1].id
    seen += await _stream(store, after, 4)
    assert seen == await store.trail_since(0, limit=10_000)
    assert len(seen) == 3 + 6 * 3


async def test_last_trail_id_is_where_a_new_stream_starts(store: Store, make: Make) -> None:
    """A stream started at ``last_trail_id`` sees exactly the lines written after."""
    ex = await make.create(store)
    await _note(store, ex, "before")
    start = await store.last_trail_id()
    assert start == (await store.trail_since(0))[-1].id
    await _note(store, ex, "after-1")
    await _note(store, ex, "after-2")
    new = await store.trail_since(start)
    assert [e.record.context["reason"] for e in new] == ["after-1", "after-2"]
    assert await store.last_trail_id() == new[-1].id


async def test_trail_ids_are_not_reused_after_retention(store: Store, make: Make) -> None:
    """Log retention may delete the newest lines (an idle store whose last execution
    ended long ago): lines written afterwards still get ids above every id a stream has
    seen, so a stream resuming from its last id misses none of them."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED, at=T0), now=T0)
    seen = await store.last_trail_id()
    assert await store.purge_logs(T0 + 1) == 2
    assert await store.logs(ex.id) == []
    assert await store.trail_since(0) == []
    assert await store.purge_logs(T0 + 1) == 0
    fresh = await make.create(store)
    await _note(store, fresh, "later")
    new = await store.trail_since(seen)
    assert [e.record for e in new] == await store.logs(fresh.id)
    assert all(e.id > seen for e in new)
    assert await store.trail_since(0) == new
    # and again, once newer lines exist
    claimed = await make.claim(store, fresh, now=T0 + 2)
    done = make.step(claimed.execution, status=S.COMPLETED, at=T0 + 2)
    await store.commit_step(done, now=T0 + 2)
    seen = await store.last_trail_id()
    assert await store.purge_logs(T0 + 3) == 3
    assert await store.trail_since(0) == []
    again = await make.create(store)
    assert [e.record for e in await store.trail_since(seen)] == await store.logs(again.id)


async def test_trail_record_round_trips_a_log_line(store: Store, make: Make) -> None:
    """The record in an event is the stored line: level, message, time, node, context."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution, at=T0 + 3)
    commit.logs = [
        LogRecord(ex.id, "WARN", "node.retry", T0 + 3, "ask", "question", {"attempt": 2})
    ]
    await store.commit_step(commit, now=T0 + 3)
    last = (await store.trail_since(0))[-1]
    assert last.record == LogRecord(
        ex.id, "WARN", "node.retry", T0 + 3, "ask", "question", {"attempt": 2}
    )
    assert (last.institution_id, last.flow_id, last.status) == ("inst-1", "onboarding", "running")
