"""The clinic example's pieces for its tests: the flow, the booking stand-in (the one in
``examples/``, not a copy) on a free port, and the example's configuration pointed at it.

Shared by the integration, acceptance, terminal and browser tests of ``examples/clinic.json``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLINIC = EXAMPLES / "clinic.json"
STANDIN = EXAMPLES / "booking_standin.py"
CONFIG = EXAMPLES / "trilha.toml"
#: where examples/trilha.toml expects the stand-in; tests use a free port instead
EXAMPLE_BOOKING_URL = "http://127.0.0.1:8766"


def standin_module() -> ModuleType:
    """``examples/booking_standin.py`` as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("booking_standin", STANDIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STANDIN_MODULE = standin_module()
#: the slots the stand-in offers when it starts, as it serves them
SLOTS: list[dict[str, str]] = [dict(s) for s in STANDIN_MODULE.SLOTS]


#: the English rows' titles, which the clinic writes with format_date from each slot's
#: ``at`` (the stand-in's ``label`` is Portuguese)
ENGLISH_TITLES = {
    "s-0910-0900": "Tue 06/10 9:00 AM",
    "s-0910-1430": "Tue 06/10 2:30 PM",
    "s-0911-0800": "Wed 06/11 8:00 AM",
    "s-0912-1600": "Thu 06/12 4:00 PM",
}


def slot_rows(slots: list[dict[str, str]], language: str = "pt-BR") -> list[dict[str, str]]:
    """The list rows the clinic shows for ``slots`` in ``language``."""
    if language == "en":
        return [
            {"id": s["id"], "title": ENGLISH_TITLES[s["id"]], "description": f"with {s['doctor']}"}
            for s in slots
        ]
    return [
        {"id": s["id"], "title": s["label"], "description": f"com {s['doctor']}"} for s in slots
    ]


def clinic_flow() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CLINIC.read_text(encoding="utf-8"))
    return data


@dataclass
class Standin:
    """The stand-in serving in this process: its URL and its state (bookings, free slots,
    ``down``), which tests read and change."""

    url: str
    state: Any
    server: Any
    thread: threading.Thread
    stopped: bool = False

    def stop(self) -> None:
        """Close the port: calls are refused from now on (the service is down)."""
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()


@contextmanager
def standin() -> Iterator[Standin]:
    """The stand-in on 127.0.0.1, on a port the system picked."""
    server, state = STANDIN_MODULE.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    running = Standin(f"http://127.0.0.1:{server.server_address[1]}", state, server, thread)
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def standin_process(*args: str) -> Iterator[str]:
    """The stand-in as its own process (``python examples/booking_standin.py --port 0``);
    yields its URL, read from the line it prints."""
    with subprocess.Popen(
        [sys.executable, str(STANDIN), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"listening on (http://\S+)", line)
            assert found, f"the stand-in said {line!r}"
            yield found.group(1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def example_config(booking_url: str) -> str:
    """examples/trilha.toml with the booking dependency at ``booking_url``."""
    text = CONFIG.read_text(encoding="utf-8")
    assert text.count(EXAMPLE_BOOKING_URL) == 1, "examples/trilha.toml changed its booking URL"
    return text.replace(EXAMPLE_BOOKING_URL, booking_url)
