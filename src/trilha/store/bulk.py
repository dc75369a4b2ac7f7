"""What both backends share to keep bulk jobs (:class:`~trilha.store.base.BulkJob`): the
columns read, how a row becomes a job and a job its parameters, and the store's filter
as JSON (a resumed job selects what its start selected), so SQLite and PostgreSQL
cannot drift apart. Each backend keeps its own SQL (``bulk_sqlite``, ``bulk_postgres``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, cast

import orjson

from trilha.store.base import BulkAction, BulkJob, ExecutionFilter, StepErrorMatch

#: the columns of ``bulk_jobs`` read back, in :func:`row_to_job`'s order
JOB_COLUMNS: Final = (
    "id, institution_id, actor, action, filter, selection, reason, status, total, done,"
    " succeeded, skipped, failed, errors, skips, cursor_created_at, cursor_id, created_at,"
    " updated_at, finished_at, lease_owner, lease_expires_at"
)
#: executions named in a job's ``errors`` and in its ``skips`` (the counts count them all)
MAX_NOTES: Final = 20
#: the longest reason kept for one of them
MAX_NOTE: Final = 500


def selection_json(where: ExecutionFilter) -> str:
    return orjson.dumps(dataclasses.asdict(where)).decode()


def selection_of(text: str) -> ExecutionFilter:
    fields = dict(orjson.loads(text))
    failed = fields.pop("failed_step", None)
    return ExecutionFilter(
        **fields, failed_step=StepErrorMatch(**failed) if failed is not None else None
    )


def note(execution_id: str, reason: str) -> dict[str, Any]:
    return {"executionId": execution_id, "reason": reason[:MAX_NOTE]}


def row_to_job(row: Any) -> BulkJob:
    cursor = None if row[15] is None else (float(row[15]), str(row[16]))
    return BulkJob(
        id=str(row[0]),
        institution_id=str(row[1]),
        actor=str(row[2]),
        action=cast(BulkAction, str(row[3])),
        filter=orjson.loads(row[4]),
        selection=selection_of(row[5]),
        reason=row[6],
        status=str(row[7]),
        total=int(row[8]),
        done=int(row[9]),
        succeeded=int(row[10]),
        skipped=int(row[11]),
        failed=int(row[12]),
        errors=orjson.loads(row[13]),
        skips=orjson.loads(row[14]),
        cursor=cursor,
        created_at=float(row[17]),
        updated_at=float(row[18]),
        finished_at=None if row[19] is None else float(row[19]),
        lease_owner=row[20],
        lease_expires_at=None if row[21] is None else float(row[21]),
    )


def insert_params(job: BulkJob) -> tuple[Any, ...]:
    """id, institution_id, actor, action, filter, selection, reason, total, created_at,
    updated_at, cursor_created_at, cursor_id: a new job's row."""
    cursor = job.cursor or (None, None)
    return (
        job.id,
        job.institution_id,
        job.actor,
        job.action,
        orjson.dumps(job.filter).decode(),
        selection_json(job.selection),
        job.reason,
        job.total,
        job.created_at,
        job.updated_at,
        cursor[0],
        cursor[1],
    )


def progress_params(job: BulkJob) -> tuple[Any, ...]:
    """status, done, succeeded, skipped, failed, errors, skips, cursor_created_at,
    cursor_id, finished_at: what a progress write sets."""
    cursor = job.cursor or (None, None)
    return (
        job.status,
        job.done,
        job.succeeded,
        job.skipped,
        job.failed,
        orjson.dumps(job.errors[:MAX_NOTES]).decode(),
        orjson.dumps(job.skips[:MAX_NOTES]).decode(),
        cursor[0],
        cursor[1],
        job.finished_at,
    )
