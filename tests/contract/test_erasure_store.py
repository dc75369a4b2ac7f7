"""Store contract: erasing a contact (LGPD) and retention. ``forget_contact`` deletes, in
one transaction, the contact's executions with their checkpoints, history, trail, inbox
and outbox, handoffs, signals, the stored API answers and the processed webhook bodies
naming it; another contact's data and the same contact id in another institution stay
untouched; a worker holding one of the executions loses its commit; a second erasure
counts zeros; the audit record names no one. Afterwards the erased contact's strings
are nowhere in the store: in SQLite's raw file (and WAL) bytes, in PostgreSQL's tables.
Retention finds ended executions by age and institution and erases them the same way."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import asyncpg
import pytest

from trilha.core.states import ExecutionStatus
from trilha.errors import ExecutionNotFound, StaleLease
from trilha.store.base import BulkJob, ExecutionFilter, Store, StoredResponse
from trilha.store.erasure import ErasureRecord

from .conftest import LEASE, T0, Backend, Make, PostgresBackend, SQLiteBackend
from .test_error_store import fail, http_error

S = ExecutionStatus

PHONE = "5511987654321"
OTHER = "5521912345678"
PNID = "106540352242922"
#: beta's own business number: a number belongs to one institution
BETA_PNID = "106540352242999"
CPF = "123.456.789-09"
EMAIL = "ana.souza@example.com"
SAID = "meu cpf e 123.456.789-09, email ana.souza@example.com"
BOT = "Obrigado Ana, confirmando o CPF 12345678909"
OTHER_SAID = "sou o Bruno, cpf 987.654.321-00"


def _record(n: int = 1, institution: str = "acme", kind: str = "contact") -> ErasureRecord:
    return ErasureRecord(f"erasure-{n}", institution, kind, "key:admin", T0 + 10)


async def _world(store: Store, make: Make, contact: str, said: str, bot: str, **kw: str) -> str:
    """A conversation of ``contact``: a question asked and answered, a handoff, a signal,
    a stored API answer naming it and a processed WhatsApp body from it."""
    institution = kw.get("institution", "acme")
    pnid = PNID if institution == "acme" else BETA_PNID
    conversation = f"wa:{pnid}:{contact}"
    ex = await make.create(
        store,
        institution=institution,
        conversation=conversation,
        contact_id=contact,
        status=S.WAITING_INPUT,
        wake_at=None,
        variables={"cpf": said, "email": EMAIL if contact == PHONE else "b@x.org"},
    )
    await make.inbound(store, ex, said)
    claimed = await make.claim(store, ex)
    assert claimed.inbound is not None
    await store.commit_step(
        make.step(
            claimed.execution,
            status=S.WAITING_INPUT,
            texts=[bot],
            applied=[claimed.inbound.id],
            handoffs=1,
            wake_at=T0 + 3_600,
            variables={"cpf": said},
        ),
        now=T0 + 1,
    )
    await store.deliver_signal(
        execution_id=ex.id,
        institution_id=institution,
        event="payment.confirmed",
        signal_id=f"sig-{contact}",
        payload={"payer": said},
        now=T0 + 2,
        max_pending=10,
    )
    await store.remember_response(
        f"{institution} POST /v1/conversations/{{conversationId}}/messages",
        f"idem-{contact}-{institution}",
        StoredResponse("h", 202, {"contactId": contact, "executionId": ex.id}, T0 + 2),
    )
    value = {
        "contacts": [{"wa_id": contact}],
        "messages": [{"from": contact, "text": {"body": said}}],
    }
    body = json.dumps({"entry": [{"changes": [{"value": value}]}]}, ensure_ascii=False).encode()
    webhook = await store.receive_channel_webhook(
        "whatsapp", body, now=T0 + 3, keys=[f"{pnid}:{contact}"]
    )
    (claimed_body,) = await store.claim_channel_webhooks(
        "whatsapp", "p", now=T0 + 3, lease_seconds=LEASE, limit=1
    )
    assert claimed_body.id == webhook
    await store.settle_channel_webhook(webhook, owner="p", now=T0 + 4, status="done")
    return ex.id


async def test_erasing_a_contact_leaves_everyone_else(store: Store, make: Make) -> None:
    erased = await _world(store, make, PHONE, SAID, BOT)
    kept = await _world(store, make, OTHER, OTHER_SAID, "Ola Bruno")
    elsewhere = await _world(store, make, PHONE, SAID, BOT, institution="beta")
    # a worker holds the contact's execution when it is erased
    holder = await store.claim_due(
        "w9", now=T0 + 3_601, lease_seconds=LEASE, limit=1, execution_id=erased
    )
    assert [c.execution.id for c in holder] == [erased]
    before_kept = await make.trail(store, kept)
    before_elsewhere = await make.trail(store, elsewhere)

    result = await store.forget_contact("acme", PHONE, record=_record())

    assert result.execution_ids == (erased,)
    assert result.conversation_ids == (f"wa:{PNID}:{PHONE}",)
    removed = result.removed
    assert removed["executions"] == 1 and removed["variables"] == 1
    assert removed["checkpoints"] == 1 and removed["transcripts"] == 1
    assert removed["inbox"] == 1 and removed["outbox"] == 1
    assert removed["handoffs"] == 1 and removed["signals"] == 1
    assert removed["transitions"] == 1  # born (waiting all along)
    assert removed["trail"] >= 3  # started, the step's line, the signal's
    # the body of the contact's conversation with acme's number; beta's number's stays
    assert removed["idempotency"] == 1 and removed["webhooks"] == 1
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(erased)
    assert await store.outbox_for(erased) == []
    assert await store.inbox_for(erased) == []
    assert await store.handoffs(erased) == []
    assert await store.logs(erased) == []
    assert await store.signals_for(erased) == []
    # the worker holding it loses its commit: nothing is written back
    with pytest.raises(StaleLease):
        await store.commit_step(make.step(holder[0].execution), now=T0 + 3_602)
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(erased)
    # the other contact, and the same contact id in another institution, untouched
    assert await make.trail(store, kept) == before_kept
    assert await make.trail(store, elsewhere) == before_elsewhere
    scope = "POST /v1/conversations/{conversationId}/messages"
    assert await store.remembered_response(f"acme {scope}", f"idem-{OTHER}-acme") is not None
    assert await store.remembered_response(f"beta {scope}", f"idem-{PHONE}-beta") is not None
    assert await store.remembered_response(f"acme {scope}", f"idem-{PHONE}-acme") is None
    # the contact's body with acme went; the same person's with beta is beta's
    bodies = await store.channel_webhooks("whatsapp", limit=10)
    assert sorted(PHONE.encode() in w.body for w in bodies) == [False, True]

    again = await store.forget_contact("acme", PHONE, record=_record(2))
    assert set(again.removed.values()) == {0}
    unknown = await store.forget_contact("acme", "no-such-contact", record=_record(3))
    assert set(unknown.removed.values()) == {0}
    records = await store.erasures("acme")
    assert sorted(r.id for r in records) == ["erasure-1", "erasure-2", "erasure-3"]
    first = next(r for r in records if r.id == "erasure-1")
    assert (first.kind, first.actor, first.removed["executions"]) == ("contact", "key:admin", 1)
    assert PHONE not in repr(records)
    assert await store.erasures("beta") == []


async def _found(backend: Backend, needle: str) -> list[str]:
    """Where ``needle`` occurs in the store: SQLite's file and WAL bytes, or the rows of
    every PostgreSQL table (as text, and byte columns as bytes)."""
    if isinstance(backend, SQLiteBackend):
        found = []
        for path in (backend.path, Path(f"{backend.path}-wal")):
            if path.exists() and needle.encode() in path.read_bytes():
                found.append(path.name)
        return found
    assert isinstance(backend, PostgresBackend)
    conn = await asyncpg.connect(backend.url)
    try:
        found = []
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for (table,) in tables:
            hits = await conn.fetchval(
                f'SELECT COUNT(*) FROM "{table}" t WHERE strpos(t::text, $1) > 0',  # noqa: S608
                needle,
            )
            if hits:
                found.append(table)
        binary = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type = 'bytea'"
        )
        for table, column in binary:
            hits = await conn.fetchval(
                f'SELECT COUNT(*) FROM "{table}"'  # noqa: S608 - the catalogue's names
                f" WHERE position(convert_to($1, 'UTF8') IN \"{column}\") > 0",
                needle,
            )
            if hits:
                found.append(f"{table}.{column}")
        return found
    finally:
        await conn.close()


async def test_a_bulk_job_naming_the_contact_keeps_its_row_not_the_name(
    store: Store, make: Make
) -> None:
    """A job's filter and reason may name the contact: the name becomes ``[erased]``
    (the job is the operators' record), another institution's job is left as it was."""
    await _world(store, make, PHONE, SAID, BOT)
    base = ExecutionFilter(institution_id="acme", contact_id=PHONE)
    for institution in ("acme", "beta"):
        await store.create_bulk_job(
            BulkJob(
                id=f"bulk-{institution}",
                institution_id=institution,
                actor="key:abc",
                action="pause",
                filter={"contactId": PHONE},
                selection=dataclasses.replace(base, institution_id=institution),
                reason=f"asked by {PHONE}",
                total=1,
                created_at=T0,
                updated_at=T0,
            ),
            max_running=3,
        )

    result = await store.forget_contact("acme", PHONE, record=_record())

    assert result.removed["bulkJobs"] == 1
    mine, theirs = await store.get_bulk_job("bulk-acme"), await store.get_bulk_job("bulk-beta")
    assert mine is not None and theirs is not None
    assert mine.filter == {"contactId": "[erased]"} and mine.reason == "asked by [erased]"
    assert mine.selection.contact_id == "[erased]"
    assert theirs.filter == {"contactId": PHONE} and theirs.selection.contact_id == PHONE


async def test_nothing_of_an_erased_contact_is_left_in_the_store(
    backend: Backend, store: Store, make: Make
) -> None:
    erased = await _world(store, make, PHONE, SAID, BOT)
    await _world(store, make, OTHER, OTHER_SAID, "Ola Bruno")
    # a failed CRM lookup of the CPF: its step error keeps the request and the input
    ex = await store.get_execution(erased)
    await fail(store, make, ex, http_error("12345678909"), at=T0 + 3_601, step_input={"cpf": CPF})
    assert await _found(backend, CPF), "the search finds what is there"
    assert await _found(backend, "customers/12345678909")
    result = await store.forget_contact("acme", PHONE, record=_record())
    assert result.removed["stepErrors"] == 1  # redacted: the row stays for the counts
    for needle in (PHONE, CPF, "12345678909", EMAIL, SAID, BOT):
        assert await _found(backend, needle) == [], needle
    # the other contact's data is still there (the search itself works)
    assert await _found(backend, OTHER) and await _found(backend, OTHER_SAID)


async def test_retention_finds_ended_executions_by_age_and_institution(
    store: Store, make: Make
) -> None:
    day = 86_400.0
    old = await make.create(store, status=S.COMPLETED, ended_at=T0 - 100 * day, wake_at=None)
    recent = await make.create(store, status=S.COMPLETED, ended_at=T0 - day, wake_at=None)
    running = await make.create(store)
    beta_old = await make.create(
        store, institution="beta", status=S.COMPLETED, ended_at=T0 - 100 * day, wake_at=None
    )
    cutoff = T0 - 30 * day
    assert await store.expired_executions(cutoff, institution_id="inst-1") == [("inst-1", old.id)]
    assert await store.expired_executions(cutoff, exclude=["inst-1"]) == [("beta", beta_old.id)]
    assert len(await store.expired_executions(cutoff)) == 2
    # only the institution's own executions are erased, whatever ids are named
    result = await store.forget_executions(
        "inst-1", [old.id, beta_old.id], record=_record(institution="inst-1", kind="retention")
    )
    assert result.execution_ids == (old.id,)
    assert result.removed["executions"] == 1 and result.removed["transitions"] == 1
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(old.id)
    for ex in (recent, running, beta_old):
        assert (await store.get_execution(ex.id)).id == ex.id
    assert [r.kind for r in await store.erasures("inst-1")] == ["retention"]
