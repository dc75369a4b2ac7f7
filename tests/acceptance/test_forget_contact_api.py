"""Erasing a contact through a real ``trilha serve``, on SQLite and on PostgreSQL
(issue 21, section 3).

A contact (``5511987654321``) goes through a flow that asks its CPF and e-mail, calls a
declared dependency with an idempotency key, and hands the conversation to a person;
its messages and the start are sent with ``Idempotency-Key``. ``DELETE
/v1/contacts/{id}`` answers the receipt; afterwards the store holds none of the
contact's id, CPF (formatted and digits), e-mail or message texts (SQLite: the raw
bytes of the file and its WAL; PostgreSQL: every table's rows as text, byte columns as
bytes), and the process log file none of its lines; another contact of the same
institution is untouched. Only an admin key erases, for the institution it names (or
its own); beta's contact of the same id is left alone until erased there."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from conftest import Api, Cli, clean_env, start_api
from outbound_servers import RawServer, raw_server
from pgcluster import run_sync
from trilha.store.postgres import PostgresStore

PHONE = "5511987654321"
CPF = "123.456.789-09"
CPF_DIGITS = "12345678909"
EMAIL = "ana.souza@example.com"
SAID_CPF = f"Meu CPF: {CPF}"
SAID_EMAIL = f"pode mandar para {EMAIL}, CPF sem pontos {CPF_DIGITS}"
OTHER = "5521912345678"
OTHER_SAID = "Sou o Bruno, CPF 987.654.321-00"

FLOW = {
    "id": "cadastro",
    "start": "welcome",
    "nodes": [
        {
            "id": "welcome",
            "type": "message",
            "text": "Oi {{nome}}! Vamos confirmar.",
            "next": "cpf",
        },
        {
            "id": "cpf",
            "type": "question",
            "text": "Qual o seu CPF?",
            "variable": "cpf",
            "next": "email",
        },
        {
            "id": "email",
            "type": "question",
            "text": "E o seu e-mail?",
            "variable": "email",
            "next": "crm",
        },
        {
            "id": "crm",
            "type": "http",
            "dependency": "crm",
            "method": "POST",
            "url": "/customers",
            "body": {"cpf": "{{cpf}}", "email": "{{email}}"},
            "saveAs": "customer",
            "retry": {"maxAttempts": 1},
            "fallback": {"next": "desk"},
            "next": "confirm",
        },
        {
            "id": "confirm",
            "type": "message",
            "text": "Obrigado {{customer.name}}, anotei {{cpf}} e {{email}}.",
            "next": "desk",
        },
        {"id": "desk", "type": "handoff", "queue": "cadastro", "text": "Um atendente segue daqui."},
    ],
}


@pytest.fixture(scope="module")
def crm() -> Iterator[RawServer]:
    with raw_server() as server:
        server.answer("/customers", body=b'{"name": "Ana Souza", "vip": true}')
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, crm: RawServer
) -> Iterator[Api]:
    """One ``trilha serve`` per backend for the module, writing a process log file."""
    folder = tmp_path_factory.mktemp(f"forget-{request.param}")
    log_file = folder / "trilha.log"
    config = (
        '[channel]\nkind = "memory"\n\n'
        f'[logging]\nfile = "{log_file}"\nlevel = "DEBUG"\nformat = "json"\n\n'
        f'[dependencies.crm]\nbase_url = "{crm.url}"\ninstitutions = ["*"]\nidempotent = true\n'
    )
    store, database, cluster = None, None, None
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        database = f"forget_{uuid.uuid4().hex[:12]}"
        cluster.create_database(database)
        store = cluster.url(database)
        run_sync(_migrate(store))
    runner = Cli(folder, clean_env())
    try:
        api = start_api(runner, folder, config=config, store=store)
        api.log_file = log_file  # type: ignore[attr-defined]
        yield api
    finally:
        for process in runner.spawned:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)
        if cluster is not None and database is not None:
            cluster.drop_database(database)


async def _migrate(url: str) -> None:
    store = PostgresStore(url, auto_migrate=False)
    try:
        await store.migrate()
    finally:
        await store.close()


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return found


def _status(client: httpx.Client, execution_id: str) -> str:
    return str(client.get(f"/v1/executions/{execution_id}").json()["status"])


def _converse(api: Api, institution: str, contact: str, replies: list[str]) -> str:
    """Start the flow for ``contact`` and answer its two questions, each request with an
    Idempotency-Key; returns the execution id once the handoff ended it and its
    messages went out."""
    conversation = f"wa-{contact}"
    key = "acme_operator" if institution == api.institutions["acme"] else "beta_operator"
    with api.client(key) as client:
        started = client.post(
            "/v1/executions",
            json={
                "flowId": "cadastro",
                "institutionId": institution,
                "conversationId": conversation,
                "contactId": contact,
                "variables": {"nome": "Ana Souza" if contact == PHONE else "Bruno"},
            },
            headers={"Idempotency-Key": f"start-{contact}"},
        )
        assert started.status_code == 201, started.text
        execution_id = str(started.json()["executionId"])
        for n, text in enumerate(replies):
            # welcome and the CPF question, then the e-mail question: asked, waiting
            until(
                lambda n=n: (
                    _sent(api, execution_id) == n + 2
                    and _status(client, execution_id) == "waiting_input"
                ),
                f"question {n + 1}",
            )
            sent = client.post(
                f"/v1/conversations/{conversation}/messages",
                json={"messageId": f"m-{contact}-{n}", "contactId": contact, "text": text},
                headers={"Idempotency-Key": f"reply-{contact}-{n}"},
            )
            assert sent.status_code == 202, sent.text
        until(lambda: _status(client, execution_id) == "completed", "the handoff")
    until(lambda: _delivered(api, execution_id), "the bot's messages to go out")
    return execution_id


def _query(api: Api, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows read from the server's store itself (``?`` placeholders, on either backend)."""
    if api.store.startswith("sqlite:///"):
        with sqlite3.connect(f"file:{_db(api)}?mode=ro", uri=True) as conn:
            return [tuple(r) for r in conn.execute(sql, params)]
    parts = sql.split("?")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))

    async def read() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(api.store)
        try:
            return [tuple(r) for r in await conn.fetch(numbered, *params)]
        finally:
            await conn.close()

    return run_sync(read())


def _db(api: Api) -> Path:
    return Path(api.store.removeprefix("sqlite:///"))


def _sent(api: Api, execution_id: str) -> int:
    """The bot's messages of the execution so far."""
    return int(
        _query(api, "SELECT COUNT(*) FROM outbox WHERE execution_id = ?", execution_id)[0][0]
    )


def _delivered(api: Api, execution_id: str) -> bool:
    (total, pending), *_ = _query(
        api,
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'pending') FROM outbox"
        " WHERE execution_id = ?",
        execution_id,
    )
    return int(total) >= 3 and not pending


def _stored(api: Api, needle: str) -> list[str]:
    """Where ``needle`` is in the store: SQLite's raw file and WAL bytes (deleted rows
    included, whatever page they were on); PostgreSQL's tables, every row as text and
    every byte column as bytes."""
    if api.store.startswith("sqlite:///"):
        db = _db(api)
        files = [db, Path(f"{db}-wal")]
        return [f.name for f in files if f.exists() and needle.encode() in f.read_bytes()]
    return run_sync(_pg_stored(api.store, needle))


async def _pg_stored(url: str, needle: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        found = []
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for (table,) in tables:
            sql = f'SELECT COUNT(*) FROM "{table}" t WHERE strpos(t::text, $1) > 0'  # noqa: S608
            if await conn.fetchval(sql, needle):
                found.append(table)
        binary = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type = 'bytea'"
        )
        for table, column in binary:
            sql = (
                f'SELECT COUNT(*) FROM "{table}"'  # noqa: S608 - the catalogue's names
                f" WHERE position(convert_to($1, 'UTF8') IN \"{column}\") > 0"
            )
            if await conn.fetchval(sql, needle):
                found.append(f"{table}.{column}")
        return found
    finally:
        await conn.close()


def test_an_erased_contact_is_nowhere_in_the_store(served: Api) -> None:
    api = served.tenant()
    acme, beta = api.institutions["acme"], api.institutions["beta"]
    for key in ("acme_operator", "beta_operator"):
        with api.client(key) as client:
            published = client.put("/v1/flows/cadastro", json=FLOW)
            assert published.status_code in (200, 201), published.text
    erased = _converse(api, acme, PHONE, [SAID_CPF, SAID_EMAIL])
    kept = _converse(api, acme, OTHER, [OTHER_SAID, "b@x.org"])
    twin = _converse(api, beta, PHONE, [SAID_CPF, SAID_EMAIL])  # beta's contact, same id
    needles = [PHONE, CPF, CPF_DIGITS, EMAIL, SAID_CPF, SAID_EMAIL, f"anotei {SAID_CPF}"]
    assert [n for n in needles if not _stored(api, n)] == [], "stored first"
    log_file: Path = served.log_file  # type: ignore[attr-defined]
    assert erased in log_file.read_text(encoding="utf-8")

    with api.client("acme_operator") as operator:
        refused = operator.delete(f"/v1/contacts/{PHONE}")
        assert refused.status_code == 403, refused.text
    with api.client("admin") as admin:
        answer = admin.delete(f"/v1/contacts/{PHONE}", params={"institutionId": acme})
        assert answer.status_code == 200, answer.text
        receipt = answer.json()
        assert (receipt["contactId"], receipt["institutionId"]) == (PHONE, acme)
        removed = receipt["removed"]
        assert removed["executions"] == 1 and removed["inbox"] == 2
        assert removed["outbox"] >= 3 and removed["handoffs"] == 1
        assert removed["checkpoints"] > 0 and removed["trail"] > 0
        assert removed["idempotency"] == 3  # the start and two replies
        assert removed["logFileLines"] > 0
        assert receipt["cancelled"] == 0  # the handoff had ended it
        again = admin.delete(f"/v1/contacts/{PHONE}", params={"institutionId": acme}).json()
        assert set(again["removed"].values()) == {0}

    # beta's contact of the same id keeps its copy of the same words
    assert _stored(api, SAID_CPF), "beta's contact of the same id is still stored"
    with api.client("beta_operator") as client:
        assert _status(client, twin) == "completed"
    with api.client("admin") as admin:
        gone = admin.delete(f"/v1/contacts/{PHONE}", params={"institutionId": beta}).json()
        assert gone["removed"]["executions"] == 1
    for needle in needles:
        assert _stored(api, needle) == [], needle
    with api.client("acme_operator") as client:
        assert client.get(f"/v1/executions/{erased}").status_code == 404
        assert _status(client, kept) == "completed"
        transcript = client.get(f"/v1/executions/{kept}/transcript").text
        assert OTHER_SAID in transcript
    assert _stored(api, OTHER_SAID)
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert not [line for line in lines if erased in line or twin in line]
    assert [line for line in lines if kept in line], "the other contact's lines stay"
    audits = [json.loads(line) for line in lines if '"contact.erased"' in line]
    assert len(audits) == 3 and all(PHONE not in json.dumps(a) for a in audits)
