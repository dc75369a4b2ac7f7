"""``trilha demo``, the quick start's one command: run as a newcomer runs it (a folder
holding ``examples/``, no option but a free port), it prints no WARN line, the README's
tour completes a scheduling conversation against the agenda stand-in, the agenda taken
down sends the next one down the flow's fallback, and Ctrl-C stops it all with 0.

One demo process serves the whole module; the tests run in order (the last stops it).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import ADDRESS_IN_USE, EXAMPLES, PORT_TRIES, TRILHA, Cli, clean_env, free_port

#: the contact of the tour's conversations
CONTACT = "5511987654321"


class Output:
    """A process's output, read as it comes (a full pipe would block it)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.append(line)

    def text(self) -> str:
        return "".join(list(self._lines))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.text())) is None:
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text()}"
            time.sleep(0.05)
        return found

    def join(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return self.text()


@dataclass
class Demo:
    cli: Cli
    process: subprocess.Popen[str]
    output: Output
    url: str
    agenda: str
    booking: str

    def client(self) -> httpx.Client:
        """The tour's: the admin key the first start wrote to ./trilha.db.admin-key."""
        key = (self.cli.cwd / "trilha.db.admin-key").read_text(encoding="utf-8").strip()
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def _start(cli: Cli) -> Demo:
    """``trilha demo --port PORT`` in ``cli.cwd``, ready; started again on another port
    when the one picked was taken before it could bind it."""
    for _ in range(PORT_TRIES):
        port = free_port()
        process = subprocess.Popen(
            [str(TRILHA), "demo", "--port", str(port)],
            cwd=cli.cwd,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        cli.spawned.append(process)
        output = Output(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while process.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    agenda = output.wait_for(r"agenda +(http://\S+) ").group(1)
                    booking = output.wait_for(r"booking +(http://\S+) ").group(1)
                    return Demo(cli, process, output, url, agenda, booking)
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"trilha demo not ready:\n{output.text()}"
            time.sleep(0.05)
        said = output.join()
        assert ADDRESS_IN_USE in said.lower(), f"trilha demo did not start:\n{said}"
    raise AssertionError(f"trilha demo found no free port in {PORT_TRIES} tries")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    cwd = tmp_path_factory.mktemp("demo")
    (cwd / "examples").symlink_to(EXAMPLES)  # run where examples/ is, as the README says
    cli = Cli(cwd, clean_env())
    try:
        yield _start(cli)
    finally:
        for proc in cli.spawned:  # only the processes this module started
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


# ------------------------------------------------------------------ the tour's requests


def start(client: httpx.Client, conversation: str) -> dict[str, Any]:
    """The tour's ``curl .../v1/executions``: the scheduling flow for ``conversation``."""
    answer = client.post(
        "/v1/executions",
        json={
            "flowId": "scheduling",
            "institutionId": "local",
            "conversationId": conversation,
            "contactId": CONTACT,
        },
    )
    assert answer.status_code == 201, answer.text
    started: dict[str, Any] = answer.json()
    return started


def reply(client: httpx.Client, conversation: str, text: str) -> None:
    """The tour's ``reply CONVERSATION TEXT``: the contact's message (a new messageId)."""
    answer = client.post(
        f"/v1/conversations/{conversation}/messages",
        json={
            "institutionId": "local",
            "contactId": CONTACT,
            "messageId": uuid.uuid4().hex,
            "text": text,
        },
    )
    assert answer.status_code == 202, answer.text


def ended(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The execution once it has ended (the tour's ``sleep`` before ``trilha show``)."""
    deadline = time.monotonic() + 60
    while True:
        execution: dict[str, Any] = client.get(f"/v1/executions/{execution_id}").json()
        if execution["status"] in ("completed", "failed", "cancelled", "timeout"):
            return execution
        assert time.monotonic() < deadline, execution
        time.sleep(0.1)


def said(client: httpx.Client, execution_id: str) -> list[str]:
    lines = client.get(f"/v1/executions/{execution_id}/transcript").json()["transcript"]
    return [line["text"] for line in lines]


# ---------------------------------------------------------------------------------- tests


def test_a_fresh_start_says_what_runs_where_and_warns_of_nothing(demo: Demo) -> None:
    """The first start writes the key, names the API, the debugger and both stand-ins,
    and prints no WARN line (every dependency the examples call is declared)."""
    text = demo.output.wait_for(r"try it: .*\n").string
    assert "no API key existed" in text
    assert f"debugger   {demo.url}/debugger" in text
    assert "stand-in for scheduling, up" in text
    assert "stand-in for clinic, up" in text
    assert '"api.started"' in text
    assert "WARN" not in text, text


def test_the_tour_completes_a_scheduling_conversation(demo: Demo) -> None:
    """Started and answered as the tour does, scheduling books with the agenda stand-in
    and completes; the agenda's answer is in its variables, and ``trilha show`` says so."""
    with demo.client() as client:
        execution = start(client, "demo-1")
        for text in ("Ana", "1", "1", "sim"):
            reply(client, "demo-1", text)
        done = ended(client, execution["executionId"])
        assert (done["status"], done["outcome"], done["currentNodeId"]) == (
            "completed",
            "completed",
            "bye",
        ), done
        [booked] = httpx.get(f"{demo.agenda}/bookings").json()
        variables = done["variables"]
        assert variables["booking"] == booked
        assert variables["protocol"] == booked["protocol"] == "AG-1001"
        assert variables["availability"]["slots"][0] == variables["slot"] == booked["slot"]
        bot = said(client, execution["executionId"])
        assert bot[-1] == (
            f"Pronto, Ana! Seu atendimento (consulta) está agendado para"
            f" {booked['slot']['label']}. Protocolo AG-1001. Até lá!"
        )
    shown = demo.cli("show", "--conversation", "demo-1")
    assert shown.returncode == 0, shown.stderr
    assert "completed (completed)" in shown.stdout
    assert "Protocolo AG-1001" in shown.stdout
    assert "WARN" not in demo.output.text()


def test_with_the_agenda_down_scheduling_takes_its_fallback(demo: Demo) -> None:
    """``POST /down`` on the agenda stand-in: the slots call fails (503), the node's
    fallback apologises and hands the contact to the scheduling desk; ``/up`` serves again."""
    assert httpx.post(f"{demo.agenda}/down").json() == {"down": True}
    try:
        with demo.client() as client:
            execution = start(client, "demo-2")
            for text in ("Bia", "2"):
                reply(client, "demo-2", text)
            done = ended(client, execution["executionId"])
            assert (done["status"], done["outcome"], done["currentNodeId"]) == (
                "completed",
                "escalated",
                "to_desk",
            ), done
            assert "availability" not in done["variables"]
            assert "Desculpe, Bia, nosso sistema de agenda não está respondendo agora." in said(
                client, execution["executionId"]
            )
            history = client.get(f"/v1/executions/{execution['executionId']}/history").json()
            assert "fallback" in {change["to"] for change in history["history"]}, history
    finally:
        assert httpx.post(f"{demo.agenda}/up").json() == {"down": False}
    assert httpx.get(f"{demo.agenda}/slots", params={"service": "exame"}).status_code == 200


def test_ctrl_c_stops_the_demo_and_its_standins(demo: Demo) -> None:
    """SIGINT ends the process with 0 and closes the stand-ins' ports with it."""
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=60) == 0, demo.output.join()
    text = demo.output.join()
    assert '"api.stopped"' in text
    assert "Traceback" not in text
    for url in (demo.agenda, demo.booking, demo.url):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)
