"""SQLite's SQL for bulk jobs (:mod:`trilha.store.bulk`).

Functions of a connection inside the caller's transaction (``BEGIN IMMEDIATE``: one
writer at a time, so a count of running jobs holds until the insert, and a claim's
read of a lease until its write).
"""

from __future__ import annotations

import sqlite3

from trilha.errors import LimitExceeded
from trilha.store.base import BulkJob
from trilha.store.bulk import JOB_COLUMNS, insert_params, progress_params, row_to_job

#: a lease that still holds at ``?`` (given twice): not expired, its owner not stopped
_LIVE = (
    "lease_owner IS NOT NULL AND lease_expires_at >= ? AND lease_owner NOT IN"
    " (SELECT worker_id FROM workers WHERE alive_until < ?)"
)


def create(conn: sqlite3.Connection, job: BulkJob, max_running: int) -> BulkJob:
    (running,) = conn.execute(
        "SELECT count(*) FROM bulk_jobs WHERE institution_id = ? AND status = 'running'",
        (job.institution_id,),
    ).fetchone()
    if int(running) >= max_running:
        raise LimitExceeded(
            too_many(job.institution_id, max_running), limit=max_running, bound="max_bulk_jobs"
        )
    conn.execute(
        "INSERT INTO bulk_jobs (id, institution_id, actor, action, filter, selection, reason,"
        " total, created_at, updated_at, cursor_created_at, cursor_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        insert_params(job),
    )
    return get(conn, job.id) or job


def too_many(institution_id: str, max_running: int) -> str:
    return (
        f"institution '{institution_id}' has {max_running} bulk actions running, the most"
        " it may ([api] max_bulk_jobs); wait for one to finish"
    )


def get(conn: sqlite3.Connection, job_id: str) -> BulkJob | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else row_to_job(row)


def claim(
    conn: sqlite3.Connection,
    owner: str,
    *,
    now: float,
    lease_seconds: float,
    job_id: str | None,
) -> BulkJob | None:
    row = conn.execute(
        f"SELECT id FROM bulk_jobs WHERE status = 'running' AND (? IS NULL OR id = ?)"
        f" AND NOT ({_LIVE}) ORDER BY created_at, id LIMIT 1",
        (job_id, job_id, now, now),
    ).fetchone()
    if row is None:
        return None
    claimed = conn.execute(
        f"UPDATE bulk_jobs SET lease_owner = ?, lease_expires_at = ? WHERE id = ?"
        f" RETURNING {JOB_COLUMNS}",
        (owner, now + lease_seconds, row[0]),
    ).fetchone()
    return row_to_job(claimed)


def save(
    conn: sqlite3.Connection, job: BulkJob, *, owner: str, now: float, lease_until: float
) -> bool:
    ending = job.status != "running"
    return (
        conn.execute(
            "UPDATE bulk_jobs SET status = ?, done = ?, succeeded = ?, skipped = ?, failed = ?,"
            " errors = ?, skips = ?, cursor_created_at = ?, cursor_id = ?, finished_at = ?,"
            " updated_at = ?, lease_owner = ?, lease_expires_at = ?"
            " WHERE id = ? AND status = 'running' AND lease_owner = ?",
            (
                *progress_params(job),
                now,
                None if ending else owner,
                None if ending else lease_until,
                job.id,
                owner,
            ),
        ).rowcount
        == 1
    )


def listed(
    conn: sqlite3.Connection, institution_id: str | None, status: str | None, limit: int
) -> list[BulkJob]:
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE (? IS NULL OR institution_id = ?)"
        " AND (? IS NULL OR status = ?) ORDER BY created_at DESC, id DESC LIMIT ?",
        (institution_id, institution_id, status, status, limit),
    ).fetchall()
    return [row_to_job(r) for r in rows]
