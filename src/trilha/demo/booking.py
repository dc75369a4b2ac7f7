"""A stand-in for a dental clinic's booking service, for ``examples/clinic.json``.

Standard library only. ``trilha demo`` starts it beside the examples; by hand::

    python examples/booking_standin.py --port 8766

``examples/trilha.toml`` declares it as the ``booking`` dependency. It serves:

- ``GET /slots``: the free slots, a JSON list of ``{id, label, doctor, at}``
  (``label`` is Portuguese, ``at`` a wall-clock time in São Paulo);
- ``POST /bookings`` with ``{"slotId", "name", ...}``: books the slot and answers
  ``201 {id, protocol, slot, name, phone, insuranceCard, language}``; a slot that is
  not free answers ``409``, a body without ``slotId`` or ``name`` ``422``. A request
  repeated with the same ``Idempotency-Key`` gets the first answer again and books
  nothing twice (so trilha may resend it: ``idempotent = true`` in the config);
- ``GET /bookings``: what was booked, to check a run;
- ``GET /health``, ``POST /down``, ``POST /up``: see :mod:`trilha.demo.standin`.

``--down`` starts it answering ``503`` to everything but those, to see the flow's
fallback. Port ``0`` picks a free port; the first line printed says which
(``booking stand-in listening on http://127.0.0.1:PORT``).
"""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from typing import Any

from trilha.demo import standin
from trilha.demo.standin import Answer, StandIn

#: the clinic's free slots when the stand-in starts (fixed, so a run can be checked)
SLOTS: tuple[dict[str, str], ...] = (
    {
        "id": "s-0910-0900",
        "label": "ter 10/06 09:00",
        "doctor": "Dra. Ana Lima",
        "at": "2025-06-10T09:00:00-03:00",
    },
    {
        "id": "s-0910-1430",
        "label": "ter 10/06 14:30",
        "doctor": "Dr. Bruno Reis",
        "at": "2025-06-10T14:30:00-03:00",
    },
    {
        "id": "s-0911-0800",
        "label": "qua 11/06 08:00",
        "doctor": "Dra. Ana Lima",
        "at": "2025-06-11T08:00:00-03:00",
    },
    {
        "id": "s-0912-1600",
        "label": "qui 12/06 16:00",
        "doctor": "Dra. Carla Souza",
        "at": "2025-06-12T16:00:00-03:00",
    },
)
#: bookings kept at most, so a long-running demo cannot grow without bound
MAX_BOOKINGS = 10_000
#: where ``examples/trilha.toml`` expects it
DEFAULT_PORT = 8766


class Booking(StandIn):
    """The service's state: free slots, bookings, answers by idempotency key."""

    name = "booking"

    def __init__(self, slots: tuple[dict[str, str], ...] = SLOTS) -> None:
        super().__init__()
        self.free: dict[str, dict[str, str]] = {s["id"]: dict(s) for s in slots}
        self.bookings: list[dict[str, Any]] = []

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        if (method, path) == ("GET", "/slots"):
            with self.lock:
                return 200, list(self.free.values())
        if (method, path) == ("GET", "/bookings"):
            with self.lock:
                return 200, list(self.bookings)
        if (method, path) == ("POST", "/bookings"):
            return self.book(body)
        return super().answer(method, path, query, body)

    def book(self, body: Any) -> Answer:
        with self.lock:
            return self._book(body)

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
        slot = self.free.pop(slot_id, None)
        if slot is None:
            return 409, {"error": f"slot {slot_id} is not free"}
        number = len(self.bookings) + 1
        booking = {
            "id": f"bk-{number:04d}",
            "protocol": f"CLN-{1000 + number}",
            "slot": slot,
            "name": name.strip(),
            "phone": body.get("phone"),
            "insuranceCard": body.get("insuranceCard"),
            "language": body.get("language"),
        }
        self.bookings.append(booking)
        return 201, booking


def make_server(
    host: str = "127.0.0.1", port: int = 0, *, quiet: bool = False
) -> tuple[ThreadingHTTPServer, Booking]:
    """A server bound to ``host:port`` (``0``: a free one) and the state it serves."""
    state = Booking()
    return standin.make_server(state, host, port, quiet=quiet), state


def main(argv: list[str] | None = None) -> None:
    standin.main(Booking(), (__doc__ or "").splitlines()[0], DEFAULT_PORT, argv)


if __name__ == "__main__":
    main()
