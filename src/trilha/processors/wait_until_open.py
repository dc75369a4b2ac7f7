"""``wait_until_open``: wait, durably, until the institution's calendar is open.

The wait is a timer in the store (``waiting_delay`` until the next opening, as a
``delay`` is), never a sleeping task. When the timer fires the calendar is asked
again: it may have changed meanwhile (new hours, a holiday added), or the process
may have been down through the whole opening, and the contact is served only while
it is open. The calendars are the running institution's (``sys.calendars``, which
the engine fills for flows that name one); a calendar that does not exist, or never
opens within a year, fails the node (kind ``configuration``: no retry, its fallback
path is taken) with a message naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from trilha.core import calendars
from trilha.core.dates import iso
from trilha.core.flow import WaitUntilOpenNode
from trilha.errors import NodeError
from trilha.processors.base import StepContext, StepResult, WaitTimer


def institution_calendar(name: str, ctx: StepContext) -> calendars.Calendar:
    """The running institution's calendar ``name``, or a node error saying why not."""
    own = ctx.variables.get("sys")
    known = own.get("calendars") if isinstance(own, Mapping) else None
    wire = known.get(name) if isinstance(known, Mapping) else None
    if wire is None:
        raise NodeError(
            f"no calendar '{name}' for institution '{ctx.institution_id}': define it with"
            f" PUT /v1/calendars/{name} or [calendars.{name}] in trilha.toml",
            kind="configuration",
            calendar=name,
        )
    try:
        return calendars.calendar_from_wire(wire)
    except calendars.CalendarError as exc:
        raise NodeError(
            f"calendar '{name}' cannot be used: {exc}", kind="configuration", calendar=name
        ) from None


class WaitUntilOpenProcessor:
    node_type: ClassVar[str] = "wait_until_open"
    node_model: ClassVar[type[WaitUntilOpenNode]] = WaitUntilOpenNode
    effectful: ClassVar[bool] = False

    async def run(self, node: WaitUntilOpenNode, ctx: StepContext) -> StepResult:
        due = ctx.node_state.get("dueAt")
        if isinstance(due, int | float) and ctx.now < due:
            # woken before the opening (an operator's resume): the timer stands
            return StepResult(wait=WaitTimer(float(due)), node_state=dict(ctx.node_state))
        calendar = institution_calendar(node.calendar, ctx)
        now = datetime.fromtimestamp(ctx.now, UTC)
        opens = calendars.next_open(calendar, now)
        if opens is None:
            raise NodeError(
                f"calendar '{node.calendar}' does not open in the next"
                f" {calendars.HORIZON_DAYS} days",
                kind="configuration",
                calendar=node.calendar,
            )
        output: dict[str, Any] = {"calendar": node.calendar}
        if opens.astimezone(UTC) <= now:  # in UTC: a repeated hour's instant compares by it
            if due is not None:
                output["waitedUntil"] = ctx.node_state.get("opensAt")
            return StepResult(output=output | {"open": True})
        opens_at = iso(opens)
        return StepResult(
            wait=WaitTimer(opens.timestamp()),
            node_state={"dueAt": opens.timestamp(), "opensAt": opens_at},
            output=output | {"open": False, "opensAt": opens_at},
        )
