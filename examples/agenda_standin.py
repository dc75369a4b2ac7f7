"""A stand-in for a clinic's agenda service, for examples/scheduling.json.

``trilha demo`` starts it for you. To run it by hand (with the Python trilha is
installed in; the stand-in itself, ``trilha.demo.agenda``, uses the standard library
only)::

    .venv/bin/python examples/agenda_standin.py --port 8765 [--down]
    .venv/bin/trilha run examples/scheduling.json --config examples/trilha.toml

``examples/trilha.toml`` declares it as the ``agenda`` dependency. What it serves:
``GET /slots?service=consulta|exame|vacina`` (``{"service", "slots": [{id, label,
service, at}]}``, the next three free), ``POST /bookings`` (``{"service", "slotId",
"name", ...}``, answered ``{id, protocol, status, ...}``, once per
``Idempotency-Key``), ``GET /bookings``, ``GET /health``; ``POST /down`` and
``POST /up`` take it down (503) and up while it runs. The first line printed says
where it listens (``agenda stand-in listening on http://127.0.0.1:PORT``).
"""

from __future__ import annotations

import sys

try:
    from trilha.demo.agenda import Agenda, main, make_server, make_slots
except ImportError:  # run by a Python that does not have trilha
    sys.exit(f"{sys.argv[0]}: run it with the Python trilha is installed in (.venv/bin/python)")

__all__ = ["Agenda", "main", "make_server", "make_slots"]

if __name__ == "__main__":
    main()
