"""The example flows in ``examples/``, run end to end through the real engine and store.

Each test drives a conversation the way a contact would (start, replies, the clock
moving for delays), against a real SQLite file and, for scheduling, a real HTTP
server on 127.0.0.1 standing in for the agenda service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from trilha.config import Config, DependencyConfig, load_config
from trilha.core.execution import Execution
from trilha.core.flow import parse_flow
from trilha.core.states import ExecutionStatus, Outcome
from trilha.flowfiles import flow_files

S = ExecutionStatus
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BOT = "bot"
YOU = "contact"

SLOTS = [
    {"id": "s-101", "label": "seg 10/06 às 09:00"},
    {"id": "s-102", "label": "seg 10/06 às 14:30"},
    {"id": "s-103", "label": "ter 11/06 às 08:00"},
]
PHONE = "+5511987654321"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def node_of(flow: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in flow["nodes"] if n["id"] == node_id)


async def transcript(h: Any, execution_id: str) -> list[tuple[str, str]]:
    return [(t.sender, t.text) for t in await h.store.transcript(execution_id)]


async def drive(h: Any, execution_id: str) -> Execution:
    """Settle, moving the fake clock over timers (delays, retry backoff) until the
    execution ends or waits for the contact."""
    for _ in range(50):
        await h.settle(execution_id)
        ex: Execution = await h.get(execution_id)
        if ex.status.terminal or ex.status is S.WAITING_INPUT:
            return ex
        due = ex.wake_at if ex.wake_at is not None else ex.due_at
        if due is None:
            return ex
        h.clock.advance(max(0.0, due - h.clock.now()))
    raise AssertionError(f"execution {execution_id} did not come to rest")


async def say(h: Any, execution_id: str, *texts: str) -> Execution:
    ex: Execution = await h.get(execution_id)
    for text in texts:
        await h.engine.send(execution_id, text)
        ex = await drive(h, execution_id)
    return ex


async def assert_delivered(h: Any, execution_id: str) -> None:
    """Every bot line of the transcript reached the channel once, in order."""
    bot = [text for who, text in await transcript(h, execution_id) if who == BOT]
    assert h.channel.texts(execution_id) == bot
    assert h.channel.duplicates == 0


# ----------------------------------------------------------------------------- all examples


@pytest.mark.parametrize("path", flow_files(EXAMPLES), ids=lambda p: p.name)
def test_example_is_valid_without_warnings(path: Path) -> None:
    """Every example flow parses with no errors and no warnings."""
    flow, problems = parse_flow(json.loads(path.read_text(encoding="utf-8")))
    assert flow is not None, problems
    assert problems == []


def test_example_config_declares_the_agenda() -> None:
    """examples/trilha.toml declares the dependency the scheduling flow calls."""
    config = load_config(EXAMPLES / "trilha.toml")
    http_nodes = [n for n in example("scheduling")["nodes"] if n["type"] == "http"]
    assert {n["dependency"] for n in http_nodes} == {"agenda"}
    assert config.dependencies["agenda"].base_url == "http://127.0.0.1:8765"


# ------------------------------------------------------------------------------- onboarding


async def test_onboarding_happy_path(harness: Any) -> None:
    """Onboarding asks name, CPF and e-mail, confirms and completes with the data saved."""
    await harness.publish(example("onboarding"))
    ex = await harness.start("onboarding")
    ex = await drive(harness, ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_name"

    ex = await say(harness, ex.id, "Ana Souza", "123.456.789-09", "Ana.Souza@Example.com")
    assert ex.current_node_id == "confirm"
    ex = await say(harness, ex.id, "Sim")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert ex.variables == {
        "contact": {"name": "Ana Souza"},
        "cpf": "123.456.789-09",
        "email": "ana.souza@example.com",
        "confirmed": "yes",
        "onboarded": True,
        "greeting": "Welcome aboard, Ana Souza!",
    }
    assert await transcript(harness, ex.id) == [
        (BOT, "Olá! Welcome to Banco Trilha. Let's open your account."),
        (BOT, "What is your full name?"),
        (YOU, "Ana Souza"),
        (BOT, "Thanks, Ana Souza. What is your CPF (11 digits)?"),
        (YOU, "123.456.789-09"),
        (BOT, "And your e-mail?"),
        (YOU, "Ana.Souza@Example.com"),
        (BOT, "Is this right? Ana Souza, CPF 123.456.789-09, ana.souza@example.com. (yes/no)"),
        (YOU, "Sim"),
        (BOT, "Welcome aboard, Ana Souza! Your account request is on its way."),
    ]
    assert await harness.store.handoffs(ex.id) == []
    await assert_delivered(harness, ex.id)


async def test_onboarding_no_starts_over(harness: Any) -> None:
    """Answering 'não' to the confirmation asks everything again and keeps the new answers."""
    await harness.publish(example("onboarding"))
    ex = await harness.start("onboarding")
    await drive(harness, ex.id)
    ex = await say(harness, ex.id, "Ana", "12345678909", "ana@example.com", "não")
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_name"
    ex = await say(harness, ex.id, "Ana Paula", "98765432100", "ana.paula@example.com", "s")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert ex.variables["contact"]["name"] == "Ana Paula"
    assert ex.variables["cpf"] == "98765432100"
    lines = await transcript(harness, ex.id)
    assert lines.count((BOT, "What is your full name?")) == 2
    assert lines[-1] == (BOT, "Welcome aboard, Ana Paula! Your account request is on its way.")


async def test_onboarding_bad_cpf_hands_off(harness: Any) -> None:
    """Three unreadable CPFs re-ask twice, then hand the contact to the onboarding desk."""
    await harness.publish(example("onboarding"))
    ex = await harness.start("onboarding")
    await drive(harness, ex.id)
    ex = await say(harness, ex.id, "João Silva", "123", "abc")
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_cpf"
    ex = await say(harness, ex.id, "não sei")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    handoffs = await harness.store.handoffs(ex.id)
    assert [(h.queue, h.reason) for h in handoffs] == [
        ("onboarding-desk", "could not read the CPF")
    ]
    retry = "That does not look like a CPF. Please type the 11 digits, e.g. 123.456.789-09."
    assert (await transcript(harness, ex.id))[-7:] == [
        (BOT, "Thanks, João Silva. What is your CPF (11 digits)?"),
        (YOU, "123"),
        (BOT, retry),
        (YOU, "abc"),
        (BOT, retry),
        (YOU, "não sei"),
        (BOT, "Let me connect you with a person who can help."),
    ]
    assert "cpf" not in ex.variables
    await assert_delivered(harness, ex.id)


async def test_onboarding_silence_times_out(harness: Any) -> None:
    """A contact who never answers is told so after inputTimeoutSeconds and the run ends."""
    await harness.publish(example("onboarding"))
    ex = await harness.start("onboarding")
    ex = await drive(harness, ex.id)
    assert ex.due_at == pytest.approx(harness.clock.now() + 86_400)

    harness.clock.advance(86_400 - 1)
    ex = await drive(harness, ex.id)
    assert ex.status is S.WAITING_INPUT

    harness.clock.advance(2)
    ex = await drive(harness, ex.id)
    assert ex.status is S.TIMEOUT and ex.outcome is Outcome.TIMEOUT
    assert (await transcript(harness, ex.id))[-1] == (
        BOT,
        "We did not hear back from you. Type anything to start again.",
    )
    await assert_delivered(harness, ex.id)


# ------------------------------------------------------------------------------- scheduling


def agenda_config(server: Any) -> Config:
    return Config(dependencies={"agenda": DependencyConfig(base_url=server.url)})


async def start_scheduling(
    make_harness: Callable[..., Any],
    server: Any,
    flow: dict[str, Any] | None = None,
    service: str = "2",
) -> tuple[Any, Execution]:
    """Start the scheduling flow, give a name and a service, and stop at the delay."""
    h = make_harness(config=agenda_config(server))
    await h.publish(flow or example("scheduling"))
    ex = await h.start("scheduling", variables={"contact": {"phone": PHONE}})
    await h.settle(ex.id)
    await h.reply(ex.id, "Maria Silva")
    ex = await h.reply(ex.id, service)
    return h, ex


async def test_scheduling_books_a_slot(make_harness: Callable[..., Any], http_server: Any) -> None:
    """Scheduling waits 1 s, GETs the slots, offers them, POSTs the booking and confirms."""
    http_server.route("GET", "/slots", body={"slots": SLOTS})
    http_server.route(
        "POST", "/bookings", status=201, body={"protocol": "AG-0042", "status": "confirmed"}
    )
    h, ex = await start_scheduling(make_harness, http_server)

    # the "checking availability" pause is a durable timer, not a sleeping task
    assert ex.status is S.WAITING_DELAY and ex.current_node_id == "pause"
    assert ex.due_at == pytest.approx(h.clock.now() + 1)
    assert http_server.requests == []
    h.clock.advance(0.5)
    await h.settle(ex.id)
    assert (await h.get(ex.id)).status is S.WAITING_DELAY
    h.clock.advance(0.5)
    ex = await drive(h, ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_slot"
    assert ex.variables["availability"] == {"slots": SLOTS}

    ex = await say(h, ex.id, "2", "sim")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert [(r["method"], r["path"]) for r in http_server.requests] == [
        ("GET", "/slots?service=exame"),
        ("POST", "/bookings"),
    ]
    assert http_server.requests[1]["body"] == {
        "service": "exame",
        "slotId": "s-102",
        "name": "Maria Silva",
        "contact": PHONE,
        "channel": "whatsapp",
    }
    assert ex.variables["slot"] == SLOTS[1]
    assert ex.variables["booking"] == {"protocol": "AG-0042", "status": "confirmed"}
    assert ex.variables["protocol"] == "AG-0042"
    assert ex.variables["scheduled"] is True
    assert await transcript(h, ex.id) == [
        (
            BOT,
            "Olá! Aqui é a assistente virtual da Clínica Trilha."
            " Vou te ajudar a agendar um atendimento.",
        ),
        (BOT, "Para começar, qual é o seu nome?"),
        (YOU, "Maria Silva"),
        (
            BOT,
            "Prazer, Maria Silva! Qual serviço você deseja agendar?"
            "\n1. Consulta\n2. Exame de sangue\n3. Vacina",
        ),
        (YOU, "2"),
        (BOT, "Um instante, estou verificando a agenda..."),
        (
            BOT,
            "Tenho estes horários livres:\n1. seg 10/06 às 09:00\n2. seg 10/06 às 14:30"
            "\n3. ter 11/06 às 08:00\nResponda com o número do horário,"
            " ou 0 para falar com um atendente.",
        ),
        (YOU, "2"),
        (BOT, "Confirma exame em seg 10/06 às 14:30? (sim/não)"),
        (YOU, "sim"),
        (
            BOT,
            "Pronto, Maria Silva! Seu atendimento (exame) está agendado para"
            " seg 10/06 às 14:30. Protocolo AG-0042. Até lá!",
        ),
    ]
    assert await h.store.handoffs(ex.id) == []
    await assert_delivered(h, ex.id)


async def test_scheduling_contact_changes_mind(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A slot not on the list is re-asked, 'não' offers the slots again, the last pick is booked."""
    http_server.route("GET", "/slots", body={"slots": SLOTS[:2]})
    http_server.route("POST", "/bookings", body={"protocol": "AG-0043"})
    h, ex = await start_scheduling(make_harness, http_server, service="vacinação")
    ex = await drive(h, ex.id)
    assert ex.current_node_id == "ask_slot"

    ex = await say(h, ex.id, "3")
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_slot"
    ex = await say(h, ex.id, "1", "não", "dois")
    assert ex.current_node_id == "ask_slot"  # "dois" is not a number: asked again
    ex = await say(h, ex.id, "2", "ok")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert [(r["method"], r["path"]) for r in http_server.requests] == [
        ("GET", "/slots?service=vacina"),
        ("POST", "/bookings"),
    ]
    assert http_server.requests[1]["body"]["slotId"] == "s-102"
    bot = [text for who, text in await transcript(h, ex.id) if who == BOT]
    assert bot.count("Essa opção não está na lista.") == 1
    assert "Confirma vacina em seg 10/06 às 09:00? (sim/não)" in bot
    assert bot[-1].endswith("está agendado para seg 10/06 às 14:30. Protocolo AG-0043. Até lá!")


async def test_scheduling_no_free_slots_hands_off(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """An empty agenda is explained and the contact goes to the scheduling desk."""
    http_server.route("GET", "/slots", body={"slots": []})
    h, ex = await start_scheduling(make_harness, http_server, service="consulta")
    ex = await drive(h, ex.id)

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [(hd.queue, hd.reason) for hd in await h.store.handoffs(ex.id)] == [
        ("agendamento", "agendamento de consulta não concluído pelo bot")
    ]
    assert (await transcript(h, ex.id))[-2:] == [
        (BOT, "Poxa, não há horários livres para consulta nos próximos dias."),
        (
            BOT,
            "Vou te transferir para um atendente da nossa equipe,"
            " que vai concluir o agendamento com você.",
        ),
    ]
    assert [r["method"] for r in http_server.requests] == ["GET"]


async def test_scheduling_zero_asks_for_a_person(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Answering 0 to the slot list hands the contact to the desk without booking."""
    http_server.route("GET", "/slots", body={"slots": SLOTS})
    h, ex = await start_scheduling(make_harness, http_server)
    await drive(h, ex.id)
    ex = await say(h, ex.id, "0")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [hd.queue for hd in await h.store.handoffs(ex.id)] == ["agendamento"]
    assert [r["method"] for r in http_server.requests] == ["GET"]


async def assert_agenda_down_path(h: Any, ex: Execution, server: Any) -> None:
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [(hd.queue, hd.reason) for hd in await h.store.handoffs(ex.id)] == [
        ("agendamento", "agendamento de exame não concluído pelo bot")
    ]
    assert (await transcript(h, ex.id))[-3:] == [
        (BOT, "Um instante, estou verificando a agenda..."),
        (BOT, "Desculpe, Maria Silva, nosso sistema de agenda não está respondendo agora."),
        (
            BOT,
            "Vou te transferir para um atendente da nossa equipe,"
            " que vai concluir o agendamento com você.",
        ),
    ]
    requests = [(r["method"], r["path"]) for r in server.requests]
    assert requests, "the agenda was never called"
    assert set(requests) == {("GET", "/slots?service=exame")}  # retried, perhaps; never booked
    assert "slot" not in ex.variables and "booking" not in ex.variables
    await assert_delivered(h, ex.id)


async def test_scheduling_agenda_error_follows_fallback(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 500 from the agenda follows the node fallback: an apology, then the desk."""
    http_server.route("GET", "/slots", status=500, body={"error": "database is down"})
    h, ex = await start_scheduling(make_harness, http_server)
    ex = await drive(h, ex.id)

    await assert_agenda_down_path(h, ex, http_server)
    failures = [r for r in await h.store.logs(ex.id) if r.message == "node.failed"]
    assert failures and all(r.node_id == "fetch_slots" for r in failures)
    assert "answered 500" in json.dumps(failures[-1].context)
    history = [(t.target, t.node_id) for t in await h.store.transitions(ex.id)]
    assert (S.FALLBACK, "fetch_slots") in history


async def test_scheduling_slow_agenda_follows_fallback(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """An agenda slower than the node's timeout is cut off and the fallback path is taken."""
    flow = example("scheduling")
    node_of(flow, "fetch_slots")["timeoutSeconds"] = 0.3  # the example says 5 s
    http_server.route("GET", "/slots", body={"slots": SLOTS}, delay=1.5)
    h, ex = await start_scheduling(make_harness, http_server, flow=flow)
    ex = await drive(h, ex.id)

    await assert_agenda_down_path(h, ex, http_server)
    failures = [r for r in await h.store.logs(ex.id) if r.message == "node.failed"]
    assert failures
    assert "took longer than 0.3s" in json.dumps(failures[-1].context, ensure_ascii=False)


async def test_scheduling_booking_error_follows_fallback(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A failed POST after the slot was chosen also apologises and hands off, once."""
    http_server.route("GET", "/slots", body={"slots": SLOTS})
    http_server.route("POST", "/bookings", status=503)
    h, ex = await start_scheduling(make_harness, http_server)
    await drive(h, ex.id)
    ex = await say(h, ex.id, "1", "sim")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [r["method"] for r in http_server.requests] == ["GET", "POST"]  # maxAttempts 1
    assert [hd.queue for hd in await h.store.handoffs(ex.id)] == ["agendamento"]
    assert (await transcript(h, ex.id))[-2][1].startswith("Desculpe, Maria Silva")
    assert ex.variables["slot"] == SLOTS[0]
    assert "booking" not in ex.variables


async def test_contact_text_in_a_templated_url_stays_one_value(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """What a contact typed, placed in an http url template, is one percent-encoded value:
    it adds no query parameter and no path segment ('&', '=', '/', '..' are escaped)."""
    http_server.route("GET", "/slots", body={"slots": []})
    h = make_harness(config=agenda_config(http_server))
    await h.publish(
        {
            "id": "free-text-url",
            "start": "ask_service",
            "nodes": [
                {
                    "id": "ask_service",
                    "type": "question",
                    "text": "Serviço?",
                    "variable": "service",
                    "next": "ask_patient",
                },
                {
                    "id": "ask_patient",
                    "type": "question",
                    "text": "Paciente?",
                    "variable": "patient",
                    "next": "slots",
                },
                {
                    "id": "slots",
                    "type": "http",
                    "dependency": "agenda",
                    "url": "/slots?service={{service}}&limit=3",
                    "saveAs": "availability",
                    "fallback": {"next": "history"},
                    "next": "history",
                },
                {
                    "id": "history",
                    "type": "http",
                    "dependency": "agenda",
                    "url": "/patients/{{patient}}/bookings",
                    "saveAs": "bookings",
                    "fallback": {"next": "done"},
                    "next": "done",
                },
                {"id": "done", "type": "end"},
            ],
        }
    )
    ex = await h.start("free-text-url")
    await drive(h, ex.id)
    ex = await say(h, ex.id, "exame de sangue&admin=true", "../../admin/export?all=1#")

    assert ex.status is S.COMPLETED
    first, second = (urlsplit(r["path"]) for r in http_server.requests)
    assert parse_qs(first.query) == {"service": ["exame de sangue&admin=true"], "limit": ["3"]}
    segments = second.path.split("/")
    assert segments[:2] == ["", "patients"] and segments[-1] == "bookings", second.path
    assert len(segments) == 4, f"the contact's text became path segments: {second.path}"
    assert unquote(segments[2]) == "../../admin/export?all=1#"
    assert second.query == ""


# ------------------------------------------------------------- http to a private address


def loopback_flow(url: str, *, with_fallback: bool) -> dict[str, Any]:
    call: dict[str, Any] = {
        "id": "call",
        "type": "http",
        "method": "GET",
        "url": url,
        "saveAs": "data",
        "next": "done",
    }
    if with_fallback:
        call["fallback"] = {"next": "sorry"}
    return {
        "id": "loopback",
        "start": "call",
        "nodes": [
            call,
            {"id": "done", "type": "end", "text": "got {{data}}"},
            {"id": "sorry", "type": "end", "text": "Serviço indisponível no momento."},
        ],
    }


async def test_plain_loopback_url_is_refused_and_fallback_followed(
    harness: Any, http_server: Any
) -> None:
    """An http node with a plain 127.0.0.1 URL is refused before connecting; fallback runs."""
    http_server.route("GET", "/secret", body={"token": "s3cr3t"})
    await harness.publish(loopback_flow(f"{http_server.url}/secret", with_fallback=True))
    ex = await harness.start("loopback")
    ex = await drive(harness, ex.id)

    assert http_server.requests == []
    assert ex.status is S.COMPLETED
    assert "data" not in ex.variables
    assert await transcript(harness, ex.id) == [(BOT, "Serviço indisponível no momento.")]
    failure = next(r for r in await harness.store.logs(ex.id) if r.message == "node.failed")
    assert "127.0.0.1" in json.dumps(failure.context)


async def test_plain_loopback_url_without_fallback_fails(harness: Any, http_server: Any) -> None:
    """Without a fallback the refused call fails the execution, naming the blocked address."""
    http_server.route("GET", "/secret", body={"token": "s3cr3t"})
    await harness.publish(loopback_flow(f"{http_server.url}/secret", with_fallback=False))
    ex = await harness.start("loopback")
    ex = await drive(harness, ex.id)

    assert http_server.requests == []
    assert ex.status is S.FAILED and ex.outcome is Outcome.FAILED
    assert ex.error is not None
    assert ex.error["type"] == "BlockedAddress"
    assert "127.0.0.1" in ex.error["message"]


# --------------------------------------------------------------------------- support triage


async def start_triage(harness: Any) -> Execution:
    await harness.publish(example("faq"))
    await harness.publish(example("support_triage"))
    ex = await harness.start("support_triage")
    ex = await drive(harness, ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_problem"
    return ex


SECURITY_TEXT = (
    "Estou te transferindo agora para a nossa equipe de segurança."
    " Um atendente já vai falar com você."
)


async def test_triage_fraud_goes_straight_to_security(harness: Any) -> None:
    """A fraud keyword skips every question and hands off to the urgent security queue."""
    ex = await start_triage(harness)
    ex = await say(harness, ex.id, "Acho que meu cartão foi CLONADO!")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert ex.variables["category"] == "fraude"
    assert ex.variables["priority"] == "alta"
    assert [(hd.queue, hd.reason) for hd in await harness.store.handoffs(ex.id)] == [
        ("seguranca-urgente", "fraude (prioridade alta): Acho que meu cartão foi CLONADO!")
    ]
    assert await transcript(harness, ex.id) == [
        (BOT, "Olá! Você está falando com o suporte do Banco Trilha."),
        (BOT, "Conte em poucas palavras: qual é o problema?"),
        (YOU, "Acho que meu cartão foi CLONADO!"),
        (BOT, "Isso é urgente. Por segurança, não compartilhe senhas nem códigos com ninguém."),
        (BOT, SECURITY_TEXT),
    ]
    await assert_delivered(harness, ex.id)


async def test_triage_lost_card_is_urgent(harness: Any) -> None:
    """'Cartão' asks what happened; a lost card sets the urgent variables and hands off."""
    ex = await start_triage(harness)
    ex = await say(harness, ex.id, "Problema com o Cartão")
    assert ex.current_node_id == "ask_card_issue"
    ex = await say(harness, ex.id, "perdi")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert ex.variables["card_issue"] == "perda_roubo"
    assert ex.variables["category"] == "cartao_perda_roubo"
    assert ex.variables["priority"] == "alta"
    assert ex.variables["block_card"] is True
    handoffs = await harness.store.handoffs(ex.id)
    assert [(hd.queue, hd.reason) for hd in handoffs] == [
        ("seguranca-urgente", "cartao_perda_roubo (prioridade alta): Problema com o Cartão")
    ]
    assert (await transcript(harness, ex.id))[-1] == (BOT, SECURITY_TEXT)


async def test_triage_pix_jumps_to_faq_and_resolves(harness: Any) -> None:
    """A Pix question sets the topic, jumps to the faq flow, answers and completes there."""
    ex = await start_triage(harness)
    ex = await say(harness, ex.id, "não consigo fazer um pix à noite")

    assert ex.status is S.WAITING_INPUT
    assert (ex.flow_id, ex.current_node_id) == ("faq", "solved")
    assert ex.variables["topic"] == "pix"
    ex = await say(harness, ex.id, "resolveu")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert ex.flow_id == "faq"
    assert ex.variables["solved"] == "sim"
    assert await harness.store.handoffs(ex.id) == []
    lines = await transcript(harness, ex.id)
    assert lines[2:] == [
        (YOU, "não consigo fazer um pix à noite"),
        (BOT, node_of(example("faq"), "pix")["text"]),
        (BOT, "Isso resolveu a sua dúvida? (sim/não)"),
        (YOU, "resolveu"),
        (BOT, "Que bom! O Banco Trilha agradece o contato."),
    ]
    await assert_delivered(harness, ex.id)


async def test_triage_menu_then_faq_unresolved_hands_off(harness: Any) -> None:
    """Words with no keyword show the menu; an FAQ answer that did not help goes to a person."""
    ex = await start_triage(harness)
    ex = await say(harness, ex.id, "oi, preciso de ajuda")
    assert ex.current_node_id == "ask_menu"
    ex = await say(harness, ex.id, "3")
    assert (ex.flow_id, ex.current_node_id) == ("faq", "solved")
    ex = await say(harness, ex.id, "Não")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert ex.variables["menu"] == "senha" and ex.variables["topic"] == "senha"
    assert [(hd.queue, hd.reason) for hd in await harness.store.handoffs(ex.id)] == [
        ("suporte-geral", "dúvida sobre senha não resolvida pelo FAQ")
    ]
    bot = [text for who, text in await transcript(harness, ex.id) if who == BOT]
    assert bot[-3:] == [
        node_of(example("faq"), "senha")["text"],
        "Isso resolveu a sua dúvida? (sim/não)",
        "Certo, vou te passar para um atendente. Aguarde um momento, por favor.",
    ]


async def test_triage_card_bill_jumps_to_faq(harness: Any) -> None:
    """A card bill question is not urgent: it jumps to the faq flow's bill answer."""
    ex = await start_triage(harness)
    ex = await say(harness, ex.id, "dúvida no cartao", "3")
    assert (ex.flow_id, ex.current_node_id) == ("faq", "solved")
    assert ex.variables["topic"] == "fatura"
    assert "priority" not in ex.variables
    bot = [text for who, text in await transcript(harness, ex.id) if who == BOT]
    assert bot[-2] == node_of(example("faq"), "fatura")["text"]


async def test_triage_unclear_menu_answers_go_to_general_desk(harness: Any) -> None:
    """Two answers that match no menu option hand the contact to the general desk."""
    ex = await start_triage(harness)
    ex = await say(harness, ex.id, "bom dia", "hã?", "sei lá")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [(hd.queue, hd.reason) for hd in await harness.store.handoffs(ex.id)] == [
        ("suporte-geral", "triagem sem assunto identificado: bom dia")
    ]
    bot = [text for who, text in await transcript(harness, ex.id) if who == BOT]
    assert bot[-2:] == [
        "Responda com o número de uma das opções (1 a 4).",
        "Vou te passar para um dos nossos atendentes. Aguarde um momento, por favor.",
    ]


async def test_faq_on_its_own_asks_the_topic(harness: Any) -> None:
    """Started directly, the faq flow asks the topic before answering."""
    await harness.publish(example("faq"))
    ex = await harness.start("faq")
    ex = await drive(harness, ex.id)
    assert ex.current_node_id == "ask_topic"
    ex = await say(harness, ex.id, "Pix", "sim")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert await transcript(harness, ex.id) == [
        (BOT, "Sobre o que é a sua dúvida?\n1. Pix\n2. Senha\n3. Fatura"),
        (YOU, "Pix"),
        (BOT, node_of(example("faq"), "pix")["text"]),
        (BOT, "Isso resolveu a sua dúvida? (sim/não)"),
        (YOU, "sim"),
        (BOT, "Que bom! O Banco Trilha agradece o contato."),
    ]
