"""An institution's calendars, as a turn's steps read them (``sys.calendars``).

The core answers ``is_open``/``next_open`` from the variables alone, so the engine
puts the running institution's calendars there: those of trilha.toml it may use
(``[calendars.NAME]`` for it, or for every institution), with its own stored ones
(``PUT /v1/calendars/{name}``) in place of any of the same name. They are read at
most once a turn, and only for a flow that names a calendar (publishing tells which:
:func:`trilha.core.flow.calendars_used`), so a flow without one costs nothing. Read
per turn rather than kept: a calendar changed through any API process applies to the
next turn of every worker, with nothing to invalidate.
"""

from __future__ import annotations

from typing import Any, Final

from trilha.config import Config
from trilha.core.flow import Flow, calendars_used
from trilha.engine.turn import _Turn
from trilha.store.base import Store

__all__ = ["institution_calendars", "turn_calendars"]

#: where a turn keeps what it read, in ``_Turn.extra``
_TURN_KEY: Final = "calendars"


async def institution_calendars(
    store: Store, config: Config, institution_id: str, names: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The calendars ``institution_id``'s flows see, by name (only ``names``, when
    given), as wire forms: trilha.toml's for it, its own stored ones over them."""
    found = {
        name: calendar.wire()
        for name, calendar in config.calendars.items()
        if calendar.serves(institution_id) and (names is None or name in names)
    }
    for stored in await store.list_calendars(institution_id, names):
        found[stored.name] = stored.definition
    return found


async def turn_calendars(
    store: Store, config: Config, turn: _Turn, institution_id: str, flow: Flow
) -> dict[str, dict[str, Any]] | None:
    """``sys.calendars`` for a step of ``flow`` in this turn: ``None`` (nothing read)
    when the flow names no calendar; read once per turn (again only if the turn
    moved to another flow)."""
    use = calendars_used(flow)
    if not use:
        return None
    key = (flow.id, flow.version)
    kept = turn.extra.get(_TURN_KEY)
    if kept is not None and kept[0] == key:
        calendars: dict[str, dict[str, Any]] = kept[1]
        return calendars
    names = None if use.dynamic else sorted(use.names)
    calendars = await institution_calendars(store, config, institution_id, names)
    turn.extra[_TURN_KEY] = (key, calendars)
    return calendars
