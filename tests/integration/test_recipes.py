"""The docs' recipes (docs/recipes/*.md, their flows in examples/recipes/) run as their
pages show them, through the real engine over a real SQLite store, with a fake clock.

Each page marks its conversations with ``<!-- transcript: NAME -->`` before a fenced
block. A block holding ``$ trilha run`` / ``$ trilha signal`` commands is replayed here
as those commands do it (the flow file published, ``--var``, ``--config``, each
``--input`` as the contact's next reply, timers waited for) and its output is rebuilt
from the store: ``bot>`` / ``you>`` / ``agent ID>`` lines from the transcript, the status
line by the CLI's own printer; an execution id written ``1a2b3c4d…`` on the page stands
for the real one. A block without commands is the transcript of a conversation the test
drives itself (taps, a person's messages, a handback, the clock), as the page tells it.
The booking recipe calls the real booking stand-in (examples/booking_standin.py) on
127.0.0.1.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clinic_support import SLOTS, Standin, standin  # tests/ is on sys.path
from trilha.cli import _parse_vars, _print_status_line
from trilha.config import Config, load_config
from trilha.core.execution import Execution
from trilha.core.hold import held
from trilha.core.signals import waited_event
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.operator import Operator
from trilha.engine.signals import send_signal
from trilha.errors import ExecutionEnded
from trilha.flowfiles import check_flow_file
from trilha.inbound import InboundContent
from trilha.processors.registry import Processors
from trilha.transcript import contact_note

Harness = Any
S = ExecutionStatus

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "examples" / "recipes"
PAGES = ROOT / "docs" / "recipes"
#: the page of each recipe, and the file it includes
RECIPE_PAGES = {
    "menu.md": "menu.json",
    "booking.md": "booking.json",
    "handoff.md": "handoff.json",
    "payment-wait.md": "payment_wait.json",
}
#: an execution id as a page abbreviates it
SHORT_ID = re.compile(r"\b[0-9a-f]{8}…")
BLOCK = re.compile(r"<!-- transcript: ([\w-]+) -->\s*\n```[\w-]*\n(.*?)\n```", re.S)


def page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def transcripts(name: str) -> dict[str, str]:
    """The page's marked conversation blocks, by name."""
    found = {m.group(1): m.group(2) for m in BLOCK.finditer(page(name))}
    assert found, f"docs/recipes/{name} marks no transcript"
    return found


def recipe(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECIPES / name).read_text(encoding="utf-8"))
    return data


# ------------------------------------------------------------------------ replaying a page


def drive_to_rest(h: Harness) -> Callable[[str], Any]:
    async def drive(execution_id: str) -> Execution:
        """Run until the execution ends or waits for the contact, a signal or a person;
        timers (retry backoff, wait_until_open) are waited for, as ``trilha run`` does."""
        for _ in range(50):
            await h.settle(execution_id)
            ex: Execution = await h.get(execution_id)
            if ex.status not in (S.WAITING_DELAY, S.RECOVERING, S.RUNNING):
                return ex
            due = ex.wake_at if ex.wake_at is not None else ex.due_at
            if due is None:
                return ex
            h.clock.advance(max(0.0, due - h.clock.now()))
        raise AssertionError(f"execution {execution_id} did not come to rest")

    return drive


def status_lines(ex: Execution) -> list[str]:
    """What ``trilha run`` / ``trilha signal`` print about the execution at the end."""
    buffer = io.StringIO()
    _print_status_line(ex, Console(file=buffer, width=1000, color_system=None))
    return buffer.getvalue().rstrip("\n").split("\n")


@dataclass
class Replay:
    """A page's commands replayed, each ``trilha run`` on a harness configured by its
    ``--config``: what they show, line by line."""

    make: Callable[..., Harness]
    booking_url: str | None = None
    h: Harness = None
    execution_id: str = ""
    seen: int = 0
    shown: list[str] = field(default_factory=list)

    async def said(self) -> None:
        """The transcript lines not shown yet, as the terminal shows them."""
        entries = await self.h.store.transcript(self.execution_id)
        for entry in entries[self.seen :]:
            self.shown.append(line_of(entry))
        self.seen = len(entries)

    async def command(self, text: str) -> None:
        argv = shlex.split(text)
        assert argv[0] == "trilha", text
        if argv[1] == "run":
            await self.run(argv[2:])
        elif argv[1] == "signal":
            await self.signal(argv[2:])
        else:
            raise AssertionError(f"the test does not replay {text!r}")

    async def run(self, args: list[str]) -> None:
        flow_file, options = args[0], options_of(args[1:])
        config = Config()
        for path in options.get("--config", []):
            config = recipe_config(ROOT / path, self.booking_url)
        self.h = self.make(config=config)
        self.h.engine.renders = frozenset()  # the terminal's channel shows text only
        flow = await self.h.publish(json.loads((ROOT / flow_file).read_text(encoding="utf-8")))
        ex = await self.h.engine.start(
            flow.id,
            version=flow.version,
            institution_id="local",
            conversation_id=f"cli-{len(self.shown)}",
            contact_id="terminal",
            variables=_parse_vars(options.get("--var", [])),
            actor="cli",
        )
        self.execution_id, self.seen = ex.id, 0
        pending = list(options.get("--input", []))
        drive = drive_to_rest(self.h)
        while True:
            ex = await drive(ex.id)
            if ex.status is not S.WAITING_INPUT or waited_event(ex.waiting_for) or not pending:
                break
            await self.h.engine.send(ex.id, pending.pop(0))
        await self.said()
        self.shown.extend(status_lines(ex))

    async def signal(self, args: list[str]) -> None:
        _, event, *rest = args
        options = options_of(rest)
        [payload] = options.get("--payload", ["null"])
        [signal_id] = options.get("--signal-id", [None])
        result = await send_signal(
            self.h.engine,
            self.execution_id,
            event,
            payload=json.loads(payload),
            signal_id=signal_id,
        )
        self.shown.append(f"signal {result.signal.signal_id} ({event}) stored")
        ex = await drive_to_rest(self.h)(self.execution_id)
        await self.said()
        self.shown.extend(status_lines(ex))

    def text(self) -> str:
        """What was shown, the execution id as ``{id}`` and the stand-in at the address
        examples/recipes/trilha.toml gives it."""
        text = "\n".join(self.shown).replace(self.execution_id, "{id}")
        if self.booking_url is not None:
            text = text.replace(self.booking_url, "http://127.0.0.1:8766")
        return text


def options_of(args: list[str]) -> dict[str, list[str]]:
    """``--flag value`` pairs, each flag's values in order; a flag the test does not
    replay fails (a page cannot show one silently)."""
    known = {"--config", "--var", "--input", "--payload", "--signal-id"}
    options: dict[str, list[str]] = {}
    assert len(args) % 2 == 0, args
    for flag, value in zip(args[::2], args[1::2], strict=True):
        assert flag in known, f"the test does not replay {flag}"
        options.setdefault(flag, []).append(value)
    return options


def line_of(entry: Any) -> str:
    """A transcript line as a terminal shows it: ``bot>``, ``you>`` (a tap or a file
    adds what it carried, as ``trilha show`` does), ``agent ID>``."""
    if entry.sender == "bot":
        return f"bot> {entry.text}"
    if entry.sender == "agent":
        return f"agent {entry.agent_id}> {entry.text}"
    note = contact_note(entry.content)
    return f"you> {entry.text}" + (f" {note}" if note else "")


async def replay(
    make: Callable[..., Harness], block: str, booking_url: str | None = None
) -> Replay:
    """Replay a page's block of commands."""
    session = Replay(make, booking_url)
    for text in joined_commands(block).split("\n"):
        if text.startswith("$ "):
            await session.command(text[2:])
    return session


def joined_commands(block: str) -> str:
    """The block with each command on one line (a page may continue one with ``\\``)."""
    return re.sub(r" *\\\n *", " ", block)


def expected_output(block: str) -> str:
    """The block's output lines: everything but its commands."""
    lines = joined_commands(block).split("\n")
    return SHORT_ID.sub("{id}", "\n".join(t for t in lines if not t.startswith("$ ")))


def recipe_config(path: Path, booking_url: str | None) -> Config:
    """examples/recipes/trilha.toml, its booking service moved to the stand-in's port."""
    config = load_config(path)
    if booking_url is None:
        return config
    declared = config.dependencies["booking"]
    moved = declared.model_copy(update={"base_url": booking_url})
    return config.model_copy(update={"dependencies": {**config.dependencies, "booking": moved}})


async def run_block(
    make: Callable[..., Harness], block: str, booking_url: str | None = None
) -> Replay:
    """Replay the block and check it shows exactly what the page says."""
    session = await replay(make, block, booking_url)
    assert session.text() == expected_output(block)
    return session


def plain(entries: list[Any]) -> str:
    return "\n".join(line_of(e) for e in entries)


async def shown(h: Harness, execution_id: str) -> str:
    return plain(await h.store.transcript(execution_id))


async def tap(h: Harness, execution_id: str, kind: str, reply_id: str, title: str) -> Execution:
    """The contact taps a button or a list row (the API's message body)."""
    message = InboundContent.model_validate({"type": kind, "replyId": reply_id, "text": title})
    await h.engine.send(execution_id, message.plain_text(), content=message.content())
    ex: Execution = await drive_to_rest(h)(execution_id)
    return ex


async def write(h: Harness, execution_id: str, text: str) -> Execution:
    await h.engine.send(execution_id, text)
    ex: Execution = await drive_to_rest(h)(execution_id)
    return ex


# ------------------------------------------------------------------------------ every page


def test_every_recipe_validates_and_its_page_includes_it() -> None:
    """Each recipe publishes without an error; the only warning is the payment's start
    variable, which its page explains; each page includes its file through the
    snippets extension (so the page shows the file as it is) and links the node types."""
    processors = Processors.from_entry_points()
    warnings: dict[str, list[str]] = {}
    for name, file in RECIPE_PAGES.items():
        flow, problems = check_flow_file(RECIPES / file, processors.node_types)
        assert flow is not None, [str(p) for p in problems]
        warnings[file] = [str(p) for p in problems]
        text = page(name)
        assert f'--8<-- "examples/recipes/{file}"' in text, name
        assert "../flows/node-types.md" in text, name
    assert warnings == {
        "menu.json": [],
        "booking.json": [],
        "handoff.json": [],
        "payment_wait.json": [
            "nodes[0].text: warning: reads 'cobranca', which no node of the flow sets"
            " (a variable given at the start?)"
        ],
    }


def test_the_recipes_config_loads() -> None:
    """examples/recipes/trilha.toml: the booking service, idempotent, and the bank's
    calendar (weekdays 9 to 18 in São Paulo) for every institution."""
    config = load_config(RECIPES / "trilha.toml")
    booking = config.dependencies["booking"]
    assert booking.idempotent and booking.base_url.rstrip("/") == "http://127.0.0.1:8766"
    calendar = config.calendars["atendimento"]
    assert calendar.serves("local") and calendar.serves("acme")


# ------------------------------------------------------------------------------------ menu


async def test_menu_in_the_terminal_as_the_page_shows(make_harness: Callable[..., Harness]) -> None:
    """An answer that picks nothing is asked again with invalidText; a synonym picks the
    row, another the button; the conversation ends at the answer for the whole street."""
    session = await run_block(make_harness, transcripts("menu.md")["terminal"])
    h = session.h
    ex = await h.get(session.execution_id)
    menu = h.channel.messages[0].content  # degraded for the terminal: numbered options
    assert menu["type"] == "text" and menu["options"][1] == {
        "id": "falta_agua",
        "title": "Falta d'água",
    }
    assert ex.variables["assunto"] == "falta_agua" and ex.variables["falta"] == "rua"
    assert ex.current_node_id == "falta_rua" and ex.outcome is Outcome.COMPLETED


async def test_menu_tapped_as_the_page_shows(make_harness: Callable[..., Harness]) -> None:
    """Tapping a row and a button (the API's bodies on the page): the menu reaches the
    channel as an interactive list, the follow-up as buttons, and the transcript is the
    page's."""
    h = make_harness()
    flow = await h.publish(recipe("menu.json"))
    ex = await h.start(flow.id)
    ex = await drive_to_rest(h)(ex.id)
    menu = h.channel.messages[0].content
    assert menu["type"] == "list" and menu["header"] == "Águas do Vale"
    assert menu["list"]["button"] == "Ver opções"
    assert [r["id"] for r in menu["list"]["sections"][0]["rows"]] == [
        "segunda_via",
        "falta_agua",
        "vazamento",
        "religacao",
        "atendente",
    ]
    ex = await tap(h, ex.id, "list", "falta_agua", "Falta d'água")
    assert h.channel.messages[-1].content["type"] == "buttons"
    ex = await tap(h, ex.id, "button", "imovel", "Só no meu imóvel")
    assert ex.status is S.COMPLETED and ex.current_node_id == "falta_imovel"
    assert await shown(h, ex.id) == transcripts("menu.md")["taps"]


async def test_menu_two_unclear_answers_go_to_a_person(
    make_harness: Callable[..., Harness],
) -> None:
    """maxInvalid 2, onInvalid atendente: asked again twice, the third unclear answer
    hands the contact to the 'atendimento' queue (outcome escalated), as the page says."""
    h = make_harness()
    flow = await h.publish(recipe("menu.json"))
    ex = await h.start(flow.id)
    await drive_to_rest(h)(ex.id)
    for text in ("bom dia", "quero saber da minha conta de luz"):
        ex = await write(h, ex.id, text)
        assert ex.status is S.WAITING_INPUT and ex.current_node_id == "menu"
    ex = await write(h, ex.id, "???")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    [handoff] = await h.store.handoffs(ex.id)
    assert handoff.queue == "atendimento"
    assert h.channel.texts(ex.id)[-1] == (
        "Vou te passar para um dos nossos atendentes. É só aguardar um momento."
    )


# --------------------------------------------------------------------------------- booking


@pytest.fixture(scope="module")
def booking_service() -> Iterator[Standin]:
    """examples/booking_standin.py serving on a free port of 127.0.0.1, one for the
    module (stopping a server takes half a second)."""
    with standin() as running:
        yield running


@pytest.fixture
def booking(booking_service: Standin) -> Standin:
    """The stand-in as it starts: every slot free, nothing booked, up."""
    state = booking_service.state
    with state.lock:
        state.free = {s["id"]: dict(s) for s in SLOTS}
        state.bookings, state.answers, state.down = [], {}, False
    return booking_service


async def test_booking_in_the_terminal_as_the_page_shows(
    make_harness: Callable[..., Harness], booking: Standin
) -> None:
    """A number picks the stand-in's second slot, the name is asked, the stand-in books it
    once, under the step's idempotency key the page names, and the confirmation reads the
    service's answer."""
    session = await run_block(make_harness, transcripts("booking.md")["terminal"], booking.url)
    h = session.h
    ex = await h.get(session.execution_id)
    assert ex.outcome is Outcome.COMPLETED and ex.variables["slot_id"] == SLOTS[1]["id"]
    [made] = booking.state.bookings
    assert (made["slot"], made["name"], made["protocol"]) == (SLOTS[1], "Maria Silva", "CLN-1001")
    assert (made["phone"], made["language"]) == ("terminal", "pt-BR")
    [key] = booking.state.answers
    step = re.search(r"`[0-9a-f]{8}…:(\d+)`", page("booking.md"))
    assert step is not None and key == f"{ex.id}:{step.group(1)}"
    assert await h.store.handoffs(ex.id) == []


async def test_booking_a_slot_taken_meanwhile_is_offered_again(
    make_harness: Callable[..., Harness], booking: Standin
) -> None:
    """Another contact books the slot while the list is shown: the POST is answered 409
    (not retried), the bot says so, lists what is still free and books the next choice."""
    h = make_harness(config=recipe_config(RECIPES / "trilha.toml", booking.url))
    flow = await h.publish(recipe("booking.json"))
    ex = await h.start(flow.id, variables={"contact": {"name": "Maria Silva"}})
    ex = await drive_to_rest(h)(ex.id)
    assert ex.current_node_id == "ask_slot"
    status, _ = booking.state.book({"slotId": SLOTS[1]["id"], "name": "Outra Pessoa"})
    assert status == 201
    ex = await write(h, ex.id, "2")
    assert ex.current_node_id == "ask_slot" and ex.variables["offered_again"] is True
    ex = await write(h, ex.id, "2")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert ex.variables["booking"]["slot"] == SLOTS[2]
    assert [b["name"] for b in booking.state.bookings] == ["Outra Pessoa", "Maria Silva"]
    assert await shown(h, ex.id) == transcripts("booking.md")["taken"]


async def test_booking_with_the_service_down_as_the_page_shows(
    make_harness: Callable[..., Harness], booking: Standin
) -> None:
    """The stand-in answers 503 (--down): three attempts, the fallback, a handoff to the
    front desk with its reason; nothing booked."""
    booking.state.down = True
    session = await run_block(make_harness, transcripts("booking.md")["down"], booking.url)
    h = session.h
    ex = await h.get(session.execution_id)
    [handoff] = await h.store.handoffs(ex.id)
    assert (handoff.queue, handoff.reason) == ("recepcao", "sistema de agendamento indisponível")
    trail = [r.message for r in await h.store.logs(ex.id) if r.message.startswith("node.")]
    assert trail.count("node.retry_scheduled") == 2 and trail.count("node.failed") == 1
    assert booking.state.bookings == []


# --------------------------------------------------------------------------------- handoff

#: Monday 2027-01-18, 10:00 in São Paulo: people answer
MONDAY_MORNING = datetime(2027, 1, 18, 13, 0, tzinfo=UTC).timestamp()
#: Friday 2027-01-15, 19:00 in São Paulo: closed until Monday 09:00
FRIDAY_EVENING = datetime(2027, 1, 15, 22, 0, tzinfo=UTC).timestamp()
MONDAY_OPENING = datetime(2027, 1, 18, 12, 0, tzinfo=UTC).timestamp()
CONVERSATION = "wa:5511987654321"


async def bank(make_harness: Callable[..., Harness], when: float) -> tuple[Harness, Execution]:
    """The handoff recipe started at ``when`` with examples/recipes/trilha.toml (its
    calendar), as the page's POST /v1/executions starts it; at the first question."""
    h = make_harness(config=load_config(RECIPES / "trilha.toml"))
    h.clock.advance(when - h.clock.now())
    flow = await h.publish(recipe("handoff.json"))
    ex = await h.start(
        flow.id, conversation=CONVERSATION, institution_id="acme", contact_id="5511987654321"
    )
    ex = await drive_to_rest(h)(ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "assunto"
    return h, ex


async def agent_says(h: Harness, message_id: str, text: str) -> None:
    """A person's message (POST …/agent-messages), delivered through the outbox."""
    await h.store.record_agent_message(
        institution_id="acme",
        conversation_id=CONVERSATION,
        message_id=message_id,
        agent_id="ana",
        text=text,
        content=None,
        now=h.clock.now(),
    )
    await h.settle()


async def test_handoff_within_hours_and_back_as_the_page_shows(
    make_harness: Callable[..., Harness],
) -> None:
    """Monday 10:00: the subject and the story, then a person holds the conversation (the
    contact's message meanwhile goes to the person, not the bot); the person answers and
    hands back with a protocol; the bot asks whether it was solved, with the protocol."""
    h, ex = await bank(make_harness, MONDAY_MORNING)
    ex = await tap(h, ex.id, "button", "cartao", "Cartão")
    ex = await write(h, ex.id, "Não reconheço uma compra de R$ 89,90 na fatura")
    assert held(ex) and ex.current_node_id == "pessoa"
    assert ex.due_at == pytest.approx(h.clock.now() + 600)  # returnAfterSeconds
    [handoff] = await h.store.handoffs(ex.id)
    assert (handoff.queue, handoff.mode) == ("atendimento", "wait")
    assert handoff.reason == "cartao: Não reconheço uma compra de R$ 89,90 na fatura"

    h.clock.advance(60)
    await agent_says(h, "desk-1", "Oi! Aqui é a Ana. Vi a compra aqui: foi numa loja online ontem?")
    h.clock.advance(30)
    await write(h, ex.id, "Foi sim, mas não fui eu")
    assert held(await h.get(ex.id))
    h.clock.advance(60)
    await agent_says(
        h,
        "desk-2",
        "Certo. Bloqueei o cartão e abri a contestação; um novo cartão chega em 7 dias.",
    )
    back = await Operator(h.store, h.engine).handback(
        ex.id, variables={"protocolo": "HZ-2027-000481"}, actor="key:ana", reason="resolvido"
    )
    assert back.current_node_id == "resolvido"
    ex = await drive_to_rest(h)(ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "resolvido"
    ex = await tap(h, ex.id, "button", "sim", "Sim, resolvido")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert await shown(h, ex.id) == transcripts("handoff.md")["open"]


async def test_handoff_outside_hours_waits_for_the_opening_as_the_page_shows(
    make_harness: Callable[..., Harness],
) -> None:
    """Friday 19:00: the bot says when people are back (Monday 09:00) and, asked to, holds
    the conversation until then; at the opening a person takes it."""
    h, ex = await bank(make_harness, FRIDAY_EVENING)
    ex = await write(h, ex.id, "pix")
    ex = await write(h, ex.id, "Fiz um Pix para a chave errada")
    assert ex.current_node_id == "fechado"
    await h.engine.send(ex.id, "sim")
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.WAITING_DELAY and ex.current_node_id == "esperar_abrir"
    assert ex.due_at == pytest.approx(MONDAY_OPENING)
    ex = await drive_to_rest(h)(ex.id)
    assert held(ex) and ex.current_node_id == "pessoa"
    assert h.clock.now() == pytest.approx(MONDAY_OPENING)
    [handoff] = await h.store.handoffs(ex.id)
    assert handoff.reason == "pix: Fiz um Pix para a chave errada"
    assert await shown(h, ex.id) == transcripts("handoff.md")["closed"]


async def test_handoff_nobody_answers_and_the_bot_takes_it_back(
    make_harness: Callable[..., Harness],
) -> None:
    """No agent message within returnAfterSeconds (600): the bot takes the conversation
    back at onReturnTimeout and apologises."""
    h, ex = await bank(make_harness, MONDAY_MORNING)
    await write(h, ex.id, "outro")
    ex = await write(h, ex.id, "Quero mudar meu endereço")
    assert held(ex)
    h.clock.advance(600)
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED and ex.current_node_id == "ninguem"
    assert h.channel.texts(ex.id)[-1].startswith("Desculpe a demora")


# --------------------------------------------------------------------------- payment wait


def first_command(block: str) -> str:
    """The block's first command (``trilha run …``), on one line."""
    return next(t for t in joined_commands(block).split("\n") if t.startswith("$ "))[2:]


async def test_payment_confirmed_by_a_signal_as_the_page_shows(
    make_harness: Callable[..., Harness],
) -> None:
    """trilha run stops at the event wait; trilha signal stores the signal, the wait takes
    it (its payload in pagamento) and the contact is thanked with the amount; the signal
    is consumed by that step, and a repeat of its id changes nothing."""
    session = await run_block(make_harness, transcripts("payment-wait.md")["terminal"])
    h = session.h
    ex = await h.get(session.execution_id)
    assert ex.outcome is Outcome.COMPLETED and ex.current_node_id == "confirmado"
    assert ex.variables["pagamento"] == {"amount": "R$ 350,00", "method": "Pix"}
    [stored] = await h.store.signals_for(ex.id)
    assert stored.signal_id == "E18236120202701181012s0a1b2c3d4e"
    assert stored.consumed_at is not None
    again = await send_signal(
        h.engine, ex.id, "payment.confirmed", payload=None, signal_id=stored.signal_id
    )
    assert again.status == "duplicate"


async def test_payment_never_made_reminds_then_expires_as_the_page_shows(
    make_harness: Callable[..., Harness],
) -> None:
    """No signal: an hour later the reminder (with the code's expiry from validoAte), 23
    hours after it the end; both waits' timeouts are the store's due times."""
    session = Replay(make_harness)
    await session.command(first_command(transcripts("payment-wait.md")["terminal"]))
    h = session.h
    ex = await h.get(session.execution_id)
    start = h.clock.now()
    assert ex.status is S.WAITING_INPUT and ex.waiting_for == "event:payment.confirmed"
    assert ex.due_at == pytest.approx(start + 3600)
    h.clock.advance(3600)
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.current_node_id == "aguardar_mais" and ex.due_at == pytest.approx(start + 86400)
    h.clock.advance(82800)
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED and ex.current_node_id == "expirado"
    assert await shown(h, ex.id) == transcripts("payment-wait.md")["timeout"]


async def test_payment_confirmed_after_the_reminder(make_harness: Callable[..., Harness]) -> None:
    """A signal sent after the reminder is taken by the second wait; one sent to the
    ended execution is refused (409 over the API)."""
    session = Replay(make_harness)
    await session.command(first_command(transcripts("payment-wait.md")["terminal"]))
    h = session.h
    h.clock.advance(3600 + 600)
    await h.settle(session.execution_id)
    await send_signal(
        h.engine,
        session.execution_id,
        "payment.confirmed",
        payload={"amount": "R$ 350,00", "method": "Pix"},
        signal_id="E1",
    )
    ex = await drive_to_rest(h)(session.execution_id)
    assert ex.status is S.COMPLETED and ex.current_node_id == "confirmado"
    said = h.channel.texts(ex.id)
    assert said[2].startswith("Fernanda, ainda não recebemos") and said[3].startswith("Recebemos")
    with pytest.raises(ExecutionEnded):
        await send_signal(h.engine, ex.id, "payment.confirmed", signal_id="E2")
