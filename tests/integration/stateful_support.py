"""Helpers of the stateful test: a store that holds commits back, and a read-only view.

``CapturingStore`` lets a real :class:`~trilha.engine.engine.Engine` run a turn
whose commit never reaches the store (as if the worker froze just before
committing); the test replays the commit later, after the lease was lost.
``DbView`` reads the SQLite file through its own read-only connection, for what
the store protocol has no method for (the inbox, a whole-database snapshot).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trilha.core.states import TERMINAL
from trilha.store.base import StepCommit

TABLES = (
    "flows",
    "executions",
    "checkpoints",
    "transitions",
    "outbox",
    "inbox",
    "handoffs",
    "execution_logs",
    "quarantine",
)


class CapturingStore:
    """Forwards everything to ``inner`` except commits, which it keeps in ``held``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.held: list[StepCommit] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit_step(self, commit: StepCommit, *, now: float) -> None:
        self.held.append(commit)


@dataclass(frozen=True)
class InboxRow:
    conversation_id: str
    message_id: str
    text: str
    execution_id: str | None
    applied_step: int | None


class DbView:
    """A read-only connection to the store's file (WAL: sees every committed write)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )

    def close(self) -> None:
        self.conn.close()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, for "this changed nothing" comparisons."""
        return {
            table: sorted(
                self.conn.execute(f"SELECT * FROM {table}").fetchall(),  # noqa: S608 - constant
                key=repr,
            )
            for table in TABLES
        }

    def active_ids(
        self, institution_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        """Executions not in a terminal state, of one conversation if named."""
        terminal = sorted(s.value for s in TERMINAL)
        sql = "SELECT id FROM executions WHERE status NOT IN (?, ?, ?, ?)"
        params: tuple[Any, ...] = tuple(terminal)
        if conversation_id is not None:
            sql += " AND institution_id = ? AND conversation_id = ?"
            params += (institution_id, conversation_id)
        return [r[0] for r in self.all(sql, params)]

    def flow_versions(self) -> set[tuple[str, int]]:
        return {(r[0], r[1]) for r in self.all("SELECT flow_id, version FROM flows")}

    def inbox(self) -> dict[int, InboxRow]:
        rows = self.all(
            "SELECT id, conversation_id, message_id, text, execution_id, applied_step FROM inbox"
        )
        return {r[0]: InboxRow(*r[1:]) for r in rows}

    def outbox_order_by_conversation(self) -> dict[str, list[str]]:
        """Idempotency keys per conversation, in the order the dispatcher must keep."""
        order: dict[str, list[str]] = {}
        for conv, key in self.all(
            "SELECT conversation_id, idempotency_key FROM outbox ORDER BY id"
        ):
            order.setdefault(conv, []).append(key)
        return order
