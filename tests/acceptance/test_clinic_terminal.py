"""examples/clinic.json in the terminal: ``trilha run examples/clinic.json --config
examples/trilha.toml`` as its own process, typed into on a real terminal (a pty), with
the booking stand-in (examples/booking_standin.py) as another process.

The terminal shows text only, so the menu's buttons and the list of slots arrive as
numbered options and a number picks one; the clinic's location arrives as its name,
address and a map link.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from clinic_support import CLINIC, SLOTS, example_config, standin_process
from conftest import TRILHA, Cli

pytestmark = pytest.mark.slow

PROMPT = "you> "
#: what rich may add around text even on a plain terminal (styles, cursor moves)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def config_for(tmp_path: Path, booking_url: str) -> Path:
    """examples/trilha.toml, its booking service moved to the stand-in's port."""
    path = tmp_path / "trilha.toml"
    path.write_text(example_config(booking_url), encoding="utf-8")
    return path


class Terminal:
    """``trilha run`` on a pseudo-terminal: what it shows, and a keyboard."""

    def __init__(self, cli: Cli, tmp_path: Path, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [str(TRILHA), *args],
            cwd=tmp_path,
            env=cli.env,
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            text=True,
        )
        cli.spawned.append(self.process)
        os.close(slave)
        self.shown = ""

    def read_until(self, wanted: str, seconds: float = 30) -> str:
        """Everything shown from now until ``wanted`` appears (or the program ends)."""
        start = len(self.shown)
        deadline = time.monotonic() + seconds
        while wanted not in self.shown[start:] and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the program closed the terminal: it ended
                break
            if not chunk:
                break
            self.shown += ANSI.sub("", chunk.decode("utf-8", "replace").replace("\r\n", "\n"))
        return self.shown[start:]

    def answer(self, text: str) -> str:
        """Wait for the prompt, type ``text`` and Enter; what was shown before the prompt."""
        before = self.read_until(PROMPT)
        assert before.endswith(PROMPT), f"no prompt; the terminal shows:\n{self.shown}"
        os.write(self.master, f"{text}\n".encode())
        return before

    def finish(self, seconds: float = 30) -> tuple[str, str]:
        """What is shown until the program exits, and its stderr (the status line)."""
        rest = self.read_until("\0never shown\0", seconds)
        _, err = self.process.communicate(timeout=seconds)
        os.close(self.master)
        return rest, err


def test_booking_in_the_terminal_by_numbers(cli: Cli, tmp_path: Path) -> None:
    """Typing 1 picks 'Agendar' from the numbered menu, a number picks a slot from the
    numbered list the stand-in's slots make; three texts instead of the card's photo
    book without it; the confirmation, the clinic's address and a map link follow."""
    with standin_process() as booking_url:
        config = config_for(tmp_path, booking_url)
        store = f"sqlite:///{tmp_path / 'clinic.db'}"
        term = Terminal(
            cli, tmp_path, "run", str(CLINIC), "--config", str(config), "--store", store
        )
        menu = term.answer("1")
        name = term.answer("Maria Silva")
        slots = term.answer("3")
        card = term.answer("não tenho aqui")
        term.answer("não")
        term.answer("depois eu levo")
        rest, err = term.finish()
        with urllib.request.urlopen(f"{booking_url}/bookings", timeout=10) as reply:
            bookings: list[dict[str, Any]] = json.load(reply)

    assert "Clínica Sorriso" in menu
    assert "Olá! Sou a assistente virtual da Clínica Sorriso. Como posso ajudar?" in menu
    assert "1. Agendar\n2. Onde fica\n3. Falar com atendente" in menu
    assert "Para agendar, qual é o seu nome?" in name
    numbered = "\n".join(f"{n}. {s['label']} — com {s['doctor']}" for n, s in enumerate(SLOTS, 1))
    assert "Maria Silva, estes são os próximos horários livres. Qual você prefere?" in slots
    assert numbered in slots
    assert "envie uma foto da sua carteirinha do convênio" in card

    assert "Sem problemas: traga a carteirinha no dia da consulta." in rest
    assert (
        "Pronto, Maria Silva! Sua consulta está marcada para qua 11/06 08:00 com Dra. Ana Lima."
        " Protocolo CLN-1001." in rest
    )
    assert "Rua Augusta, 1500, sala 42 - Consolação, São Paulo - SP" in rest
    assert "https://www.google.com/maps/search/?api=1&query=-23.555800%2C-46.662200" in rest
    assert "Até breve!" in rest
    assert "completed (outcome completed)" in err
    assert [(b["slot"]["id"], b["name"], b["insuranceCard"]) for b in bookings] == [
        (SLOTS[2]["id"], "Maria Silva", None)
    ]


def test_english_where_we_are_scripted(cli: Cli, tmp_path: Path) -> None:
    """Scripted with --input and --language en: the English menu, '2' picks
    'Where we are', and the place prints as its name, address and a map link."""
    with standin_process() as booking_url:
        config = config_for(tmp_path, booking_url)
        run = cli(
            "run",
            CLINIC,
            "--config",
            config,
            "--store",
            f"sqlite:///{tmp_path / 'clinic.db'}",
            "--language",
            "en",
            "--input",
            "2",
        )
    assert run.returncode == 0, run.stderr
    shown = run.stdout
    assert "1. Book\n2. Where we are\n3. Talk to a person" in shown
    assert "This is where we are:\nSorriso Dental Clinic\nRua Augusta, 1500, suite 42" in shown
    assert "If you need anything else, just send us a message. See you soon!" in shown
    assert "completed (outcome completed)" in run.stderr


def test_booking_down_in_the_terminal(cli: Cli, tmp_path: Path) -> None:
    """With the stand-in answering 503 (--down), choosing 'Agendar' apologises and hands
    the conversation to the front desk."""
    with standin_process("--down") as booking_url:
        config = config_for(tmp_path, booking_url)
        run = cli(
            "run",
            CLINIC,
            "--config",
            config,
            "--store",
            f"sqlite:///{tmp_path / 'clinic.db'}",
            "--var",
            "contact.name=Ana",
            "--input",
            "Agendar",
        )
    assert run.returncode == 0, run.stderr
    assert "Desculpe, nosso sistema de agendamento não está respondendo agora." in run.stdout
    assert "completed (outcome escalated)" in run.stderr


def test_the_card_sent_with_trilha_send(cli: Cli, tmp_path: Path) -> None:
    """A scripted run stops at the card question (waiting for the contact); `trilha send
    --type media` delivers the photo a terminal cannot, and the booking goes through with
    it."""
    store = f"sqlite:///{tmp_path / 'clinic.db'}"
    with standin_process() as booking_url:
        config = config_for(tmp_path, booking_url)
        run = cli(
            "run", CLINIC, "--config", config, "--store", store, "--var", "contact.name=Ana",
            "--input", "1", "--input", "4",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "envie uma foto da sua carteirinha do convênio" in run.stdout
        waiting = re.search(r"continue with: trilha send (\w+) TEXT", run.stderr)
        assert waiting, run.stderr
        sent = cli(
            "send", waiting.group(1), "--config", config, "--store", store,
            "--type", "media", "--media-kind", "image", "--mime-type", "image/jpeg",
            "--media-url", "https://media.example.com/card.jpg",
        )  # fmt: skip
        with urllib.request.urlopen(f"{booking_url}/bookings", timeout=10) as reply:
            bookings: list[dict[str, Any]] = json.load(reply)

    assert sent.returncode == 0, sent.stderr
    assert "Pronto, Ana! Sua consulta está marcada para qui 12/06 16:00" in sent.stdout
    assert "completed (outcome completed)" in sent.stderr
    card = {"kind": "image", "url": "https://media.example.com/card.jpg", "mimeType": "image/jpeg"}
    assert [(b["slot"]["id"], b["insuranceCard"]) for b in bookings] == [(SLOTS[3]["id"], card)]
