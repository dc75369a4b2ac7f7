"""SQLite's SQL for erasures (:mod:`trilha.store.erasure`).

Functions of a connection inside the caller's transaction (``BEGIN IMMEDIATE``). The
caller turns ``secure_delete`` on around it (so the freed bytes are zeroed, not left in
free pages) and checkpoints the WAL afterwards (so no older copy of a page stays in it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from trilha.store.erasure import (
    Erased,
    ErasureRecord,
    checked_ids,
    needles,
    redacted_job,
    removed_json,
    removed_of,
    scoped_to,
    webhook_keys,
    zeros,
)
from trilha.store.rows import TRAIL_MARK

_IN_E = "IN (SELECT value FROM json_each(?))"


def forget(
    conn: sqlite3.Connection,
    institution_id: str,
    *,
    contact_id: str | None,
    execution_ids: Sequence[str] = (),
    record: ErasureRecord,
) -> Erased:
    """Erase the contact's executions (``contact_id``) or the executions named (of the
    institution only), with everything found through them; audit it as ``record``."""
    if contact_id is not None:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM executions WHERE institution_id = ? AND contact_id = ?",
                (institution_id, contact_id),
            )
        ]
    else:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM executions WHERE institution_id = ? AND id {_IN_E}",
                (institution_id, json.dumps(checked_ids(execution_ids))),
            )
        ]
    e = json.dumps(ids)
    conversations = sorted(
        {
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT conversation_id FROM executions WHERE id {_IN_E}", (e,)
            )
        }
    )
    n = zeros()
    n["executions"] = len(ids)
    n["variables"] = _one(
        conn,
        f"SELECT COUNT(*) FROM executions WHERE id {_IN_E}"
        " AND (variables <> '{}' OR start_variables <> '{}' OR stack <> '[]')",
        (e,),
    )
    # the contact's own rows beyond its executions' (a message stored with no execution)
    who = "(institution_id = ? AND contact_id = ?)" if contact_id is not None else "0"
    by_who: tuple[str, ...] = (institution_id, contact_id) if contact_id is not None else ()
    outbox = f"(execution_id {_IN_E} OR {who})"
    inbox = f"(execution_id {_IN_E} OR {who})"
    n["transcripts"] = _one(
        conn,
        f"SELECT COUNT(*) FROM executions x WHERE x.id {_IN_E} AND (EXISTS"
        " (SELECT 1 FROM inbox i WHERE i.execution_id = x.id) OR EXISTS"
        " (SELECT 1 FROM outbox o WHERE o.execution_id = x.id))",
        (e,),
    )
    n["deliveryReceipts"] = _run(
        conn,
        f"DELETE FROM delivery_receipts WHERE outbox_id IN (SELECT id FROM outbox WHERE {outbox})",
        (e, *by_who),
    )
    n["outbox"] = _run(conn, f"DELETE FROM outbox WHERE {outbox}", (e, *by_who))
    n["notifications"] = _run(
        conn,
        f"DELETE FROM desk_messages WHERE execution_id {_IN_E}"
        f" OR inbox_id IN (SELECT id FROM inbox WHERE {inbox})",
        (e, e, *by_who),
    )
    n["inbox"] = _run(conn, f"DELETE FROM inbox WHERE {inbox}", (e, *by_who))
    n["handoffs"] = _run(
        conn, f"DELETE FROM handoffs WHERE execution_id {_IN_E} OR {who}", (e, *by_who)
    )
    for kind, table in (
        ("signals", "signals"),
        ("checkpoints", "checkpoints"),
        ("transitions", "transitions"),
        ("quarantine", "quarantine"),
    ):
        n[kind] = _run(conn, f"DELETE FROM {table} WHERE execution_id {_IN_E}", (e,))
    n["stepErrors"] = _run(
        conn,
        f"UPDATE step_errors SET message = NULL, input = NULL WHERE execution_id {_IN_E}",
        (e,),
    )
    n["trail"] = _trail(conn, e)
    n["idempotency"] = _idempotency(conn, institution_id, contact_id, ids, conversations)
    n["webhooks"] = _webhooks(conn, conversations)
    n["bulkJobs"] = _bulk_jobs(conn, institution_id, [c for c in (contact_id, *conversations) if c])
    _run(conn, f"DELETE FROM executions WHERE id {_IN_E}", (e,))
    conn.execute(
        "INSERT INTO erasures (id, institution_id, kind, actor, at, removed)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (record.id, institution_id, record.kind, record.actor, record.at, removed_json(n)),
    )
    return Erased(n, tuple(ids), tuple(conversations))


def _trail(conn: sqlite3.Connection, e: str) -> int:
    """Delete the executions' trail lines. SQLite gives a new row max(id) + 1: the newest
    line of the whole trail, if it is theirs, is blanked into a placeholder of no
    execution instead (as :meth:`purge_logs` does), so a live stream's ids keep climbing."""
    top = conn.execute("SELECT MAX(id) FROM execution_logs").fetchone()[0]
    if top is None:
        return 0
    gone = _run(conn, f"DELETE FROM execution_logs WHERE execution_id {_IN_E} AND id < ?", (e, top))
    return gone + _run(
        conn,
        "UPDATE execution_logs SET execution_id = ?, level = 'DEBUG',"
        " message = 'trail.purged', node_id = NULL, node_type = NULL, context = '{}'"
        f" WHERE id = ? AND execution_id {_IN_E}",
        (TRAIL_MARK, top, e),
    )


def _idempotency(
    conn: sqlite3.Connection,
    institution_id: str,
    contact_id: str | None,
    execution_ids: Sequence[str],
    conversation_ids: Sequence[str],
) -> int:
    """Stored API answers (``Idempotency-Key``) of the institution naming the contact,
    one of its executions or conversations."""
    wanted = needles(contact_id, execution_ids, conversation_ids)
    if not wanted:
        return 0
    rows = conn.execute(
        "SELECT scope, key FROM idempotency WHERE body IS NOT NULL AND EXISTS"
        " (SELECT 1 FROM json_each(?) n WHERE instr(idempotency.body, n.value) > 0)",
        (json.dumps(wanted),),
    ).fetchall()
    mine = [(scope, key) for scope, key in rows if scoped_to(scope, institution_id)]
    conn.executemany("DELETE FROM idempotency WHERE scope = ? AND key = ?", mine)
    return len(mine)


def _bulk_jobs(conn: sqlite3.Connection, institution_id: str, names: Sequence[str]) -> int:
    """The institution's bulk jobs whose filter or reason names the contact or one of
    their conversations: the row stays (a job's progress is the operators' record), the
    name becomes ``[erased]`` (:func:`~trilha.store.erasure.redacted_job`)."""
    rows = conn.execute(
        "SELECT id, filter, selection, reason FROM bulk_jobs WHERE institution_id = ?",
        (institution_id,),
    ).fetchall()
    changed = 0
    for job_id, filter_text, selection_text, reason in rows:
        redacted = redacted_job(filter_text, selection_text, reason, names)
        if redacted is None:
            continue
        conn.execute(
            "UPDATE bulk_jobs SET filter = ?, selection = ?, reason = ? WHERE id = ?",
            (*redacted, job_id),
        )
        changed += 1
    return changed


def _webhooks(conn: sqlite3.Connection, conversation_ids: Sequence[str]) -> int:
    """Processed channel webhook bodies of the contact's conversations (by the keys kept
    with each body: a body's own bytes would name the number in other institutions'
    conversations too)."""
    found = conn.execute(
        "SELECT id FROM channel_webhooks WHERE status <> 'pending' AND id IN"
        f" (SELECT webhook_id FROM channel_webhook_keys WHERE conversation_key {_IN_E})",
        (json.dumps(webhook_keys(conversation_ids)),),
    ).fetchall()
    ids = json.dumps([r[0] for r in found])
    _run(conn, f"DELETE FROM channel_webhook_keys WHERE webhook_id {_IN_E}", (ids,))
    return _run(conn, f"DELETE FROM channel_webhooks WHERE id {_IN_E}", (ids,))


def expired(
    conn: sqlite3.Connection,
    ended_before: float,
    *,
    institution_id: str | None,
    exclude: Sequence[str],
    limit: int,
) -> list[tuple[str, str]]:
    """(institution, execution id) of executions that ended before ``ended_before``,
    oldest first: of ``institution_id``, or of any institution not in ``exclude``."""
    if institution_id is not None:
        where, params = "institution_id = ?", [institution_id]
    else:
        where, params = f"institution_id NOT {_IN_E}", [json.dumps(list(exclude))]
    rows = conn.execute(
        f"SELECT institution_id, id FROM executions WHERE ended_at < ? AND {where}"
        " ORDER BY ended_at LIMIT ?",
        (ended_before, *params, limit),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def listed(conn: sqlite3.Connection, institution_id: str, limit: int) -> list[ErasureRecord]:
    rows = conn.execute(
        "SELECT id, institution_id, kind, actor, at, removed FROM erasures"
        " WHERE institution_id = ? ORDER BY at DESC, id LIMIT ?",
        (institution_id, limit),
    ).fetchall()
    return [ErasureRecord(r[0], r[1], r[2], r[3], float(r[4]), removed_of(r[5])) for r in rows]


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> int:
    return int(conn.execute(sql, tuple(params)).fetchone()[0])


def _run(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> int:
    return int(conn.execute(sql, tuple(params)).rowcount)
