"""A stand-in for a dental clinic's booking service, for examples/clinic.json.

``trilha demo`` starts it for you. To run it by hand (with the Python trilha is
installed in; the stand-in itself, ``trilha.demo.booking``, uses the standard library
only)::

    .venv/bin/python examples/booking_standin.py --port 8766 [--down]

``examples/trilha.toml`` declares it as the ``booking`` dependency. What it serves:
``GET /slots``, ``POST /bookings`` (``{"slotId", "name", ...}``, once per
``Idempotency-Key``), ``GET /bookings``, ``GET /health``; ``POST /down`` and
``POST /up`` take it down (503) and up while it runs. The first line printed says
where it listens (``booking stand-in listening on http://127.0.0.1:PORT``).
"""

from __future__ import annotations

import sys

try:
    from trilha.demo.booking import MAX_BOOKINGS, SLOTS, Booking, main, make_server
except ImportError:  # run by a Python that does not have trilha
    sys.exit(f"{sys.argv[0]}: run it with the Python trilha is installed in (.venv/bin/python)")

__all__ = ["MAX_BOOKINGS", "SLOTS", "Booking", "main", "make_server"]

if __name__ == "__main__":
    main()
