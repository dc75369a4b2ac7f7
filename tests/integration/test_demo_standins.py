"""The demo's stand-ins (trilha.demo) on real ports of 127.0.0.1, and the configuration
``trilha demo`` builds around them from ``examples/trilha.toml``."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from threading import Thread

import httpx
import pytest

from trilha.config import Config
from trilha.demo.agenda import Agenda, make_slots
from trilha.demo.run import demo_config, start_demo
from trilha.demo.standin import MAX_ANSWERS, StandIn, make_server
from trilha.errors import ConfigError
from trilha.processors.registry import Processors
from trilha.runtime import load_folder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: a Friday: the slots skip the weekend
FRIDAY = date(2026, 12, 4)


@contextmanager
def serving(state: StandIn) -> Iterator[str]:
    server = make_server(state, "127.0.0.1", 0, quiet=True)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_slots_are_the_working_days_after_today() -> None:
    """Three working days after a Friday are Monday to Wednesday, at each service's hours,
    labelled in Portuguese with São Paulo's wall-clock time."""
    slots = make_slots(FRIDAY)
    assert set(slots) == {"consulta", "exame", "vacina"}
    consulta = slots["consulta"]
    assert [s["label"] for s in consulta[:5]] == [
        "seg 07/12 às 09:00",
        "seg 07/12 às 10:30",
        "seg 07/12 às 14:00",
        "seg 07/12 às 16:30",
        "ter 08/12 às 09:00",
    ]
    assert consulta[-1] == {
        "id": "consulta-20261209-1630",
        "label": "qua 09/12 às 16:30",
        "service": "consulta",
        "at": "2026-12-09T16:30:00-03:00",
    }
    assert all(len(v) == 12 for v in slots.values())


def test_the_agenda_answers_what_the_scheduling_flow_asks() -> None:
    """GET /slots gives the next three free slots of a service; POST /bookings books one
    (once per Idempotency-Key) and it is no longer offered; bad requests say why."""
    with serving(Agenda(FRIDAY)) as url, httpx.Client(base_url=url) as agenda:
        offered = agenda.get("/slots", params={"service": "exame"}).json()
        assert offered["service"] == "exame"
        assert [s["id"] for s in offered["slots"]] == [
            "exame-20261207-0700",
            "exame-20261207-0730",
            "exame-20261207-0800",
        ]
        body = {
            "service": "exame",
            "slotId": "exame-20261207-0730",
            "name": " Ana ",
            "contact": "5511",
        }
        headers = {"Idempotency-Key": "k-1"}
        first = agenda.post("/bookings", json=body, headers=headers)
        assert first.status_code == 201
        assert first.json() == {
            "id": "ag-0001",
            "protocol": "AG-1001",
            "status": "confirmed",
            "service": "exame",
            "slot": offered["slots"][1],
            "name": "Ana",
            "contact": "5511",
        }
        again = agenda.post("/bookings", json=body, headers=headers)
        assert (again.status_code, again.json()) == (201, first.json())
        taken = agenda.post("/bookings", json=body)
        assert taken.status_code == 409
        assert "not free" in taken.json()["error"]
        assert agenda.get("/bookings").json() == [first.json()]
        now = agenda.get("/slots", params={"service": "exame"}).json()["slots"]
        assert [s["id"] for s in now] == [
            "exame-20261207-0700",
            "exame-20261207-0800",
            "exame-20261207-0830",
        ]
        assert agenda.get("/slots").status_code == 422
        unknown = agenda.get("/slots", params={"service": "raio-x"})
        assert unknown.status_code == 404
        assert "consulta, exame, vacina" in unknown.json()["error"]
        assert agenda.post("/bookings", json={"slotId": "x"}).json() == {"error": "name: missing"}
        assert agenda.post("/bookings", content=b"{").status_code == 400


def test_down_and_up_while_it_runs() -> None:
    """POST /down makes every call answer 503 but /health; POST /up serves again."""
    with serving(Agenda(FRIDAY)) as url, httpx.Client(base_url=url) as agenda:
        assert agenda.post("/down").json() == {"down": True}
        assert agenda.get("/slots", params={"service": "vacina"}).status_code == 503
        assert agenda.get("/health").json() == {"status": "ok", "down": True}
        assert agenda.post("/up").json() == {"down": False}
        assert agenda.get("/slots", params={"service": "vacina"}).status_code == 200


def test_a_body_is_bounded_whatever_its_length_says() -> None:
    """A negative or non-numeric content-length is 400 (``-1`` would read until the
    client hangs up), one past the bound 413; a stand-in keeps a bounded number of
    answers by idempotency key."""
    with serving(Agenda(FRIDAY)) as url:
        host, port = url.removeprefix("http://").split(":")
        for length, status in (("-1", b" 400 "), ("lots", b" 400 "), ("70000", b" 413 ")):
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                raw.sendall(
                    f"POST /bookings HTTP/1.1\r\nhost: x\r\ncontent-length: {length}\r\n"
                    "connection: close\r\n\r\n{}".encode()
                )
                assert status in raw.recv(200).split(b"\r\n")[0] + b" ", length
    state = Agenda(FRIDAY)
    for n in range(MAX_ANSWERS + 5):
        state.once(f"k{n}", lambda: (409, {}))
    assert len(state.answers) == MAX_ANSWERS and "k0" not in state.answers


def test_the_example_wrapper_runs_the_standin() -> None:
    """``python examples/agenda_standin.py --port 0`` serves the packaged stand-in."""
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / "agenda_standin.py"), "--port", "0", "--down"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("agenda stand-in listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            assert httpx.get(f"{url}/health").json() == {"status": "ok", "down": True}
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_the_demo_declares_each_standin_where_it_listens() -> None:
    """With the examples, both stand-ins start and examples/trilha.toml's declarations
    point at them (its other settings kept); a taken port moves one elsewhere."""
    flows = load_folder(EXAMPLES, Processors.from_entry_points())
    base = demo_config(EXAMPLES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        declared = base.dependencies["agenda"].model_copy(
            update={"base_url": f"http://127.0.0.1:{port}"}
        )
        base = base.model_copy(update={"dependencies": {**base.dependencies, "agenda": declared}})
        with start_demo(flows, base, {"booking"}) as demo:
            running = {s.name: s for s in demo.standins}
            assert set(running) == {"agenda", "booking"}
            assert running["agenda"].wanted == port
            assert running["agenda"].flows == ["scheduling"]
            for name, s in running.items():
                assert demo.config.dependencies[name].base_url == s.url
            assert demo.config.dependencies["booking"].idempotent is True
            assert demo.config.triggers == base.triggers
            assert httpx.get(f"{running['booking'].url}/slots").status_code == 503
            agenda = httpx.get(f"{running['agenda'].url}/slots", params={"service": "vacina"})
            assert agenda.status_code == 200
            lines = "\n".join(demo.lines("http://127.0.0.1:8000", None, EXAMPLES))
            assert f"{port} was taken" in lines
            assert "stand-in for clinic, DOWN (503)" in lines
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{running['agenda'].url}/health")


def test_without_a_config_the_demo_declares_them_itself(tmp_path: Path) -> None:
    """A folder with no trilha.toml gets the stand-ins declared with their defaults."""
    (tmp_path / "scheduling.json").write_bytes((EXAMPLES / "scheduling.json").read_bytes())
    flows = load_folder(tmp_path, Processors.from_entry_points())
    assert demo_config(tmp_path) == Config()
    with start_demo(flows, Config(), set()) as demo:
        [agenda] = demo.standins
        assert agenda.name == "agenda"
        assert demo.config.dependencies["agenda"].base_url == agenda.url
        assert demo.config.dependencies["agenda"].timeout_seconds == 5
        assert set(demo.config.dependencies) == {"agenda"}


def test_down_names_a_standin_a_flow_calls(tmp_path: Path) -> None:
    """--down with an unknown name, or one no flow calls, is refused with the reason."""
    (tmp_path / "faq.json").write_bytes((EXAMPLES / "faq.json").read_bytes())
    flows = load_folder(tmp_path, Processors.from_entry_points())
    refused = {
        "crm": "--down crm: no stand-in of that name (there are agenda, booking)",
        "agenda": "--down agenda: no flow of the folder calls it",
    }
    for name, message in refused.items():
        with pytest.raises(ConfigError) as caught, start_demo(flows, Config(), {name}):
            pass
        assert str(caught.value) == message
