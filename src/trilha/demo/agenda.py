"""A stand-in for a clinic's agenda service, for ``examples/scheduling.json``.

Standard library only. ``trilha demo`` starts it beside the examples; by hand::

    python examples/agenda_standin.py --port 8765

``examples/trilha.toml`` declares it as the ``agenda`` dependency. It serves what the
flow asks for:

- ``GET /slots?service=S`` (``consulta``, ``exame`` or ``vacina``): ``200 {"service",
  "slots": [{id, label, service, at}, ...]}``, the next :data:`SHOWN` free slots of
  that service (``label`` is Portuguese, ``"ter 08/12 às 09:00"``; ``at`` a wall-clock
  time in São Paulo); an unknown service answers ``404``, none ``422``;
- ``POST /bookings`` with ``{"service", "slotId", "name", "contact"?, "channel"?}``:
  books the slot and answers ``201 {id, protocol, status, service, slot, name,
  contact}`` (``protocol``: ``AG-1001``, ``AG-1002``...); a slot that is not free
  answers ``409``, a body without ``slotId`` or ``name`` ``422``. A request repeated
  with the same ``Idempotency-Key`` gets the first answer again and books nothing twice;
- ``GET /bookings``: what was booked, to check a run;
- ``GET /health``, ``POST /down``, ``POST /up``: see :mod:`trilha.demo.standin`.

The slots are the working days after the day it starts (:func:`make_slots`), at fixed
hours per service: :data:`DAYS` days of them, so a long demo runs out (and the flow says
there is no free slot, then hands the contact to the desk). ``--down`` starts it
answering ``503``, to see the flow's fallback. Port ``0`` picks a free port; the first
line printed says which (``agenda stand-in listening on http://127.0.0.1:PORT``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from typing import Any

from trilha.demo import standin
from trilha.demo.standin import Answer, StandIn

#: São Paulo's offset (it keeps no summer time since 2019): no zoneinfo needed
SAO_PAULO = timezone(timedelta(hours=-3), "BRT")
#: each service's hours on a working day
HOURS: dict[str, tuple[str, ...]] = {
    "consulta": ("09:00", "10:30", "14:00", "16:30"),
    "exame": ("07:00", "07:30", "08:00", "08:30"),
    "vacina": ("09:00", "11:00", "15:00", "17:00"),
}
#: working days offered, from the day after it starts
DAYS = 3
#: slots a ``GET /slots`` answers with at most: the flow offers three
SHOWN = 3
#: bookings kept at most, so a long-running demo cannot grow without bound
MAX_BOOKINGS = 10_000
#: where ``examples/trilha.toml`` expects it
DEFAULT_PORT = 8765
_WEEKDAYS = ("seg", "ter", "qua", "qui", "sex", "sáb", "dom")


def make_slots(today: date) -> dict[str, list[dict[str, str]]]:
    """Each service's slots on the :data:`DAYS` working days after ``today``, in order."""
    days: list[date] = []
    day = today
    while len(days) < DAYS:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    slots: dict[str, list[dict[str, str]]] = {}
    for service, hours in HOURS.items():
        slots[service] = []
        for d in days:
            for hour in hours:
                hh, mm = (int(part) for part in hour.split(":"))
                at = datetime(d.year, d.month, d.day, hh, mm, tzinfo=SAO_PAULO)
                slots[service].append(
                    {
                        "id": f"{service}-{d:%Y%m%d}-{hh:02d}{mm:02d}",
                        "label": f"{_WEEKDAYS[d.weekday()]} {d:%d/%m} às {hour}",
                        "service": service,
                        "at": at.isoformat(),
                    }
                )
    return slots


class Agenda(StandIn):
    """The agenda's state: each service's free slots, and the bookings made."""

    name = "agenda"

    def __init__(self, today: date | None = None) -> None:
        super().__init__()
        self.slots = make_slots(today or datetime.now(SAO_PAULO).date())
        self.booked: set[str] = set()
        self.bookings: list[dict[str, Any]] = []

    def free(self, service: str) -> list[dict[str, str]]:
        with self.lock:
            return [s for s in self.slots[service] if s["id"] not in self.booked]

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        if (method, path) == ("GET", "/slots"):
            service = query.get("service")
            if not service:
                return 422, {"error": "service: missing (?service=consulta, exame or vacina)"}
            if service not in self.slots:
                known = ", ".join(self.slots)
                return 404, {"error": f"no service {service!r} (the agenda has {known})"}
            return 200, {"service": service, "slots": self.free(service)[:SHOWN]}
        if (method, path) == ("GET", "/bookings"):
            with self.lock:
                return 200, list(self.bookings)
        if (method, path) == ("POST", "/bookings"):
            with self.lock:
                return self._book(body)
        return super().answer(method, path, query, body)

    def _book(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return 422, {"error": "the body must be a JSON object"}
        slot_id, name = body.get("slotId"), body.get("name")
        if not isinstance(slot_id, str) or not slot_id:
            return 422, {"error": "slotId: missing"}
        if not isinstance(name, str) or not name.strip():
            return 422, {"error": "name: missing"}
        if len(self.bookings) >= MAX_BOOKINGS:
            return 507, {"error": f"the stand-in keeps at most {MAX_BOOKINGS} bookings"}
        slot = next((s for slots in self.slots.values() for s in slots if s["id"] == slot_id), None)
        if slot is None or slot_id in self.booked:
            return 409, {"error": f"slot {slot_id} is not free"}
        self.booked.add(slot_id)
        number = len(self.bookings) + 1
        booking = {
            "id": f"ag-{number:04d}",
            "protocol": f"AG-{1000 + number}",
            "status": "confirmed",
            "service": slot["service"],
            "slot": slot,
            "name": name.strip(),
            "contact": body.get("contact"),
        }
        self.bookings.append(booking)
        return 201, booking


def make_server(
    host: str = "127.0.0.1", port: int = 0, *, quiet: bool = False
) -> tuple[ThreadingHTTPServer, Agenda]:
    """A server bound to ``host:port`` (``0``: a free one) and the state it serves."""
    state = Agenda()
    return standin.make_server(state, host, port, quiet=quiet), state


def main(argv: list[str] | None = None) -> None:
    standin.main(Agenda(), (__doc__ or "").splitlines()[0], DEFAULT_PORT, argv)


if __name__ == "__main__":
    main()
