"""PostgreSQL's SQL for bulk jobs (:mod:`trilha.store.bulk`).

Functions of a pooled connection inside the caller's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg

from trilha.errors import LimitExceeded
from trilha.store.base import BulkJob
from trilha.store.bulk import JOB_COLUMNS, insert_params, progress_params, row_to_job
from trilha.store.bulk_sqlite import too_many

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

#: the advisory lock namespace of an institution's job starts (see postgres._MIGRATION_LOCK)
_START_LOCK: Final = 0x7472_696C
#: a lease that still holds at $1: not expired, its owner not declared stopped
_LIVE = (
    "lease_owner IS NOT NULL AND lease_expires_at >= $1 AND lease_owner NOT IN"
    " (SELECT worker_id FROM workers WHERE alive_until < $1)"
)


async def create(conn: Connection, job: BulkJob, max_running: int) -> BulkJob:
    # one start at a time per institution: the count holds until the insert commits
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", _START_LOCK, job.institution_id
    )
    running = await conn.fetchval(
        "SELECT count(*) FROM bulk_jobs WHERE institution_id = $1 AND status = 'running'",
        job.institution_id,
    )
    if int(running) >= max_running:
        raise LimitExceeded(
            too_many(job.institution_id, max_running), limit=max_running, bound="max_bulk_jobs"
        )
    row = await conn.fetchrow(
        "INSERT INTO bulk_jobs (id, institution_id, actor, action, filter, selection, reason,"
        " total, created_at, updated_at, cursor_created_at, cursor_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        f" RETURNING {JOB_COLUMNS}",
        *insert_params(job),
    )
    return row_to_job(row)


async def get(conn: Connection, job_id: str) -> BulkJob | None:
    row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE id = $1", job_id)
    return None if row is None else row_to_job(row)


async def claim(
    conn: Connection, owner: str, *, now: float, lease_seconds: float, job_id: str | None
) -> BulkJob | None:
    row = await conn.fetchrow(
        f"UPDATE bulk_jobs SET lease_owner = $2, lease_expires_at = $3 WHERE id = ("
        f" SELECT id FROM bulk_jobs WHERE status = 'running' AND ($4::text IS NULL OR id = $4)"
        f" AND NOT ({_LIVE}) ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {JOB_COLUMNS}",
        now,
        owner,
        now + lease_seconds,
        job_id,
    )
    return None if row is None else row_to_job(row)


async def save(
    conn: Connection, job: BulkJob, *, owner: str, now: float, lease_until: float
) -> bool:
    ending = job.status != "running"
    result = await conn.execute(
        "UPDATE bulk_jobs SET status = $1, done = $2, succeeded = $3, skipped = $4,"
        " failed = $5, errors = $6, skips = $7, cursor_created_at = $8, cursor_id = $9,"
        " finished_at = $10, updated_at = $11, lease_owner = $12, lease_expires_at = $13"
        " WHERE id = $14 AND status = 'running' AND lease_owner = $15",
        *progress_params(job),
        now,
        None if ending else owner,
        None if ending else lease_until,
        job.id,
        owner,
    )
    return str(result).endswith(" 1")


async def listed(
    conn: Connection, institution_id: str | None, status: str | None, limit: int
) -> list[BulkJob]:
    rows = await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE ($1::text IS NULL OR institution_id = $1)"
        " AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3",
        institution_id,
        status,
        limit,
    )
    return [row_to_job(r) for r in rows]
