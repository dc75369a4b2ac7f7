"""Moving waiting executions of a flow to another of its versions, on an operator's
behalf (``POST /v1/flows/{flowId}/migrations``, ``trilha migrate-executions``).

Executions stay pinned to the version they started on unless moved here. What may
move, and where to, is decided in :mod:`trilha.core.moving`; this module walks the
executions in batches and writes each move as the operator controls write theirs:
through :meth:`~trilha.store.base.Store.operator_write`, fenced by the token, the step
count and the update time read, so a worker that claimed the execution or committed a
step meanwhile makes the write fail. The execution is then read again and decided
again: one moved meanwhile (by another call) now runs the new version and is skipped,
so no move is applied twice. Each move leaves an INFO trail line
``operator.migrated`` (from and to version and node, actor, reason), which
``GET /v1/executions/{id}/history`` shows as an operator operation.

A call examines at most ``limit`` executions of the old version (active ones, newest
first, state by state); past that it answers a cursor to go on from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from trilha.core.execution import Execution, LogRecord
from trilha.core.flow import Flow
from trilha.core.moving import counterpart, move, move_refusal, reads_from, variables_lacking
from trilha.core.states import ExecutionStatus
from trilha.engine.engine import Engine
from trilha.errors import StaleLease
from trilha.observability.logging import echo_trail
from trilha.store.base import ExecutionFilter, Store

__all__ = ["ACTIVE_ORDER", "MAX_LIMIT", "MAX_SKIPPED_LISTED", "Migration", "Mover", "NodeCount"]

S = ExecutionStatus

#: the active states, in the order a call walks them (a cursor names its place in it)
ACTIVE_ORDER: Final = (
    S.WAITING_INPUT,
    S.WAITING_DELAY,
    S.PAUSED,
    S.RUNNING,
    S.RECOVERING,
    S.FALLBACK,
    S.DEGRADED,
)
#: the most executions of the old version one call examines
MAX_LIMIT: Final = 10_000
#: the most skipped executions an answer lists (``skippedTotal`` counts them all)
MAX_SKIPPED_LISTED: Final = 100
#: executions read per page
BATCH: Final = 200
#: a creation time after every execution's (a cursor at the top of a state's walk)
_TOP: Final = 1e15

#: (executions examined so far, moved so far)
Progress = Callable[[int, int], None]


@dataclass(slots=True)
class NodeCount:
    """The executions of the old version waiting (or active) at one node."""

    node_id: str
    count: int = 0
    counterpart: str | None = None
    missing_variables: set[str] = field(default_factory=set)

    def wire(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "count": self.count,
            "counterpart": self.counterpart,
            "missingVariables": sorted(self.missing_variables),
        }


@dataclass(slots=True)
class Migration:
    """What one call found (a dry run) or did."""

    dry_run: bool
    from_version: int
    to_version: int
    total: int = 0
    moved: int = 0
    nodes: dict[str, NodeCount] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_total: int = 0
    #: where the next call goes on from (``None``: every execution was examined)
    next_position: tuple[int, float, str] | None = None

    def skip(self, execution_id: str, reason: str) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append((execution_id, reason))

    def add(self, other: Migration) -> None:
        """Count ``other`` (the next call's) in."""
        self.total += other.total
        self.moved += other.moved
        for node_id, count in other.nodes.items():
            mine = self.nodes.setdefault(node_id, NodeCount(node_id, 0, count.counterpart))
            mine.count += count.count
            mine.missing_variables |= count.missing_variables
        for execution_id, reason in other.skipped:
            if len(self.skipped) < MAX_SKIPPED_LISTED:
                self.skipped.append((execution_id, reason))
        self.skipped_total += other.skipped_total
        self.next_position = other.next_position

    def wire(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "dryRun": self.dry_run,
            "fromVersion": self.from_version,
            "toVersion": self.to_version,
            "total": self.total,
        }
        if self.dry_run:
            answer["movable"] = self.moved
        else:
            answer["moved"] = self.moved
        answer["nodes"] = [n.wire() for n in sorted(self.nodes.values(), key=lambda n: n.node_id)]
        answer["skipped"] = [{"executionId": e, "reason": r} for e, r in self.skipped]
        answer["skippedTotal"] = self.skipped_total
        return answer


class Mover:
    """Moves (or counts, in a dry run) a flow's waiting executions to another version."""

    def __init__(self, store: Store, engine: Engine, *, attempts: int = 3) -> None:
        self.store = store
        self.engine = engine
        self.clock = engine.clock
        #: read-decide-write rounds for an execution that keeps changing
        self.attempts = attempts

    async def run(
        self,
        old: Flow,
        new: Flow,
        node_map: Mapping[str, str],
        where: ExecutionFilter,
        *,
        dry_run: bool,
        actor: str,
        reason: str | None = None,
        limit: int = MAX_LIMIT,
        after: tuple[int, float, str] | None = None,
        progress: Progress | None = None,
    ) -> Migration:
        """Examine the active executions of ``old`` that ``where`` selects (its
        ``flow_id`` is set to ``old``'s), at most ``limit`` of them from ``after`` on."""
        result = Migration(dry_run, old.version, new.version)
        where = dataclasses.replace(where, flow_id=old.id)
        reads: dict[str, list[str]] = {}
        start_state = after[0] if after is not None else 0
        before: tuple[float, str] | None = (after[1], after[2]) if after is not None else None
        for index in range(start_state, len(ACTIVE_ORDER)):
            # where this state's walk stands: the last execution examined (or the top)
            done = before or (_TOP, "")
            state = ACTIVE_ORDER[index]
            if where.status is not None and where.status != state.value:
                before = None
                continue
            narrowed = dataclasses.replace(where, status=state.value)
            while True:
                page = await self.store.list_executions(limit=BATCH, where=narrowed, before=before)
                for ex in page:
                    if ex.flow_version == old.version and result.total >= limit:
                        result.next_position = (index, *done)
                        return result
                    before = done = (ex.created_at, ex.id)
                    if ex.flow_version != old.version:
                        continue
                    result.total += 1
                    await self._one(ex, old, new, node_map, result, reads, actor, reason)
                    if progress is not None:
                        progress(result.total, result.moved)
                if len(page) < BATCH:
                    break
            before = None
        return result

    async def run_all(
        self,
        old: Flow,
        new: Flow,
        node_map: Mapping[str, str],
        where: ExecutionFilter,
        *,
        dry_run: bool,
        actor: str,
        reason: str | None = None,
        progress: Progress | None = None,
    ) -> Migration:
        """:meth:`run` call after call until every execution was examined (the CLI's
        walk: one process, no request to bound)."""
        done = Migration(dry_run, old.version, new.version)

        def counted(examined: int, moved: int) -> None:
            if progress is not None:
                progress(done.total + examined, done.moved + moved)

        after: tuple[int, float, str] | None = None
        while True:
            part = await self.run(
                old,
                new,
                node_map,
                where,
                dry_run=dry_run,
                actor=actor,
                reason=reason,
                after=after,
                progress=counted,
            )
            done.add(part)
            after = part.next_position
            if after is None:
                return done

    async def _one(
        self,
        ex: Execution,
        old: Flow,
        new: Flow,
        node_map: Mapping[str, str],
        result: Migration,
        reads: dict[str, list[str]],
        actor: str,
        reason: str | None,
    ) -> None:
        node_id = ex.current_node_id or ""
        count = result.nodes.get(node_id)
        if count is None:
            count = result.nodes[node_id] = NodeCount(
                node_id, counterpart=counterpart(node_id, new, node_map)
            )
        count.count += 1
        if count.counterpart is not None:
            if count.counterpart not in reads:
                reads[count.counterpart] = reads_from(new, count.counterpart)
            count.missing_variables.update(
                variables_lacking(reads[count.counterpart], ex.variables)
            )
        if result.dry_run:
            why = move_refusal(ex, old, new, node_map, now=self.clock.now())
            if why is None:
                result.moved += 1
            else:
                result.skip(ex.id, why)
            return
        why = await self._move(ex.id, old, new, node_map, actor, reason)
        if why is None:
            result.moved += 1
        else:
            result.skip(ex.id, why)

    async def _move(
        self,
        execution_id: str,
        old: Flow,
        new: Flow,
        node_map: Mapping[str, str],
        actor: str,
        reason: str | None,
    ) -> str | None:
        """Move one execution from a fresh read; why not, when it does not move."""
        for _ in range(self.attempts):
            ex = await self.store.get_execution(execution_id)
            now = self.clock.now()
            why = move_refusal(ex, old, new, node_map, now=now)
            if why is not None:
                return why
            token = ex.fencing_token
            moved_from, moved_to = move(ex, new, node_map)
            log = LogRecord(
                ex.id,
                "INFO",
                "operator.migrated",
                now,
                moved_to,
                None,
                {
                    "operation": "migrated",
                    "actor": actor,
                    "reason": reason,
                    "from": ex.status.value,
                    "to": ex.status.value,
                    "flowId": old.id,
                    "fromVersion": old.version,
                    "toVersion": new.version,
                    "fromNode": moved_from,
                    "toNode": moved_to,
                },
            )
            try:
                written = await self.store.operator_write(
                    ex, expected_token=token, transitions=[], logs=[log], now=now
                )
            except StaleLease:
                continue
            echo_trail([log], written)
            return None
        return f"it kept changing while being moved ({self.attempts} attempts); try again"
