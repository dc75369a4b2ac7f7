"""Numbered SQL migrations, one folder per dialect, and the rule for applying them.

Each backend records what it applied in ``schema_migrations`` and asks
:func:`plan` what to do at open: nothing, apply the pending ones (when it may),
or refuse. A store written by a newer trilha is always refused: this one would
not know its columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from trilha.errors import SchemaMismatch


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """The dialect's migrations, ordered by their number prefix (``0001_initial.sql``)."""
    folder = resources.files(__package__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def plan(dialect: str, applied: set[int], *, may_migrate: bool, where: str) -> list[Migration]:
    """The migrations to apply now, or :class:`SchemaMismatch` saying what to do.

    ``may_migrate`` is False for a process that must find the schema ready
    (``trilha serve`` and ``worker`` on a shared server); ``where`` names the store
    in the message."""
    known = load(dialect)
    latest = known[-1].version if known else 0
    newer = sorted(v for v in applied if v > latest)
    if newer:
        raise SchemaMismatch(
            f"{where}: the schema is at version {max(newer)}, newer than this trilha knows"
            f" ({latest}); upgrade trilha before using this store"
        )
    pending = [m for m in known if m.version not in applied]
    if pending and not may_migrate:
        current = max(applied, default=0)
        state = "has no trilha schema" if not applied else f"is at schema version {current}"
        raise SchemaMismatch(
            f"{where} {state}, this trilha needs version {latest}:"
            " run `trilha migrate --store URL` first"
        )
    return pending


def latest_version(dialect: str) -> int:
    known = load(dialect)
    return known[-1].version if known else 0
