"""The WhatsApp webhook processor inside the served app (its lifespan, the real store,
the Graph API stand-in), fed bodies shaped as Meta sends them: a message the inbound
model refuses does not hold the others back and is noted on the body; a body that is
not JSON is failed at once; a lookup that keeps failing is given up after its attempts
and kept; a body waiting for its retry holds its contact's later bodies back, not
other contacts'; and two processes sharing one PostgreSQL store process each body
once, in the order stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import whatsapp_webhooks as wa  # tests/ is on sys.path (rootdir mode)
from graph_standin import GraphStandIn, Refusal, graph_standin
from pgcluster import PgCluster
from trilha.api import whatsapp_webhooks
from trilha.api.app import ServeOptions, create_app, state_of
from trilha.config import Config
from trilha.store.base import ChannelWebhook, Store
from trilha.store.postgres import PostgresStore

CONTACT = "5511987654321"
OTHER_CONTACT = "5511912345678"
ASK = {
    "id": "wa_ask",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name",
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "Tchau {{name}}"},
    ],
}  # fmt: skip
#: greets, then waits an hour: every message the contact sends is kept, in order
HOLDS = {
    "id": "wa_holds",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Olá!", "next": "wait"},
        {"id": "wait", "type": "delay", "seconds": 3600, "next": "bye"},
        {"id": "bye", "type": "end"},
    ],
}


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as made:
        yield made


def settings(standin: GraphStandIn, **channel: Any) -> Config:
    return Config.model_validate(
        {
            "channel": {
                "kind": "whatsapp",
                "backoff_seconds": 0.01,
                "max_backoff_seconds": 0.02,
                **channel,
                "whatsapp": {
                    "access_token": "token",
                    "app_secret": "secret",
                    "verify_token": "verify",
                    "api_base_url": standin.url,
                    "timeout_seconds": 1,
                    "numbers": [{"phone_number_id": wa.PHONE_NUMBER_ID, "institution": "acme"}],
                },
            },
            "engine": {"heartbeat_seconds": 0.1},
            "triggers": [
                {"institution": "acme", "keywords": ["oi"], "flowId": "wa_ask"},
                {"institution": "acme", "keywords": ["espera"], "flowId": "wa_holds"},
            ],
        }
    )


@asynccontextmanager
async def served(tmp_path: Path, store_url: str, config: Config) -> AsyncIterator[Any]:
    """The app with its lifespan running: workers, and the webhook processor."""
    flows = tmp_path / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "wa_ask.json").write_text(json.dumps(ASK), encoding="utf-8")
    (flows / "wa_holds.json").write_text(json.dumps(HOLDS), encoding="utf-8")
    app = create_app(ServeOptions(store_url=store_url, flows_dir=flows), config=config)
    async with app.router.lifespan_context(app):
        yield app


def store_of(app: Any) -> Store:
    return state_of(app).runtime.store


async def receive(app: Any, *messages: dict[str, Any], wa_id: str = CONTACT) -> int:
    """Keep a body as the route does (with its conversations), and wake the processor."""
    body = wa.notification(wa.value(messages=list(messages), wa_id=wa_id))
    webhook_id = await store_of(app).receive_channel_webhook(
        "whatsapp",
        wa.encode(body),
        now=state_of(app).runtime.engine.clock.now(),
        keys=wa.keys(body),
    )
    app.state.whatsapp.processor.wake()
    return webhook_id


async def settled(app: Any, webhook_id: int, within: float = 15.0) -> ChannelWebhook:
    async def done() -> ChannelWebhook:
        while True:
            for hook in await store_of(app).channel_webhooks("whatsapp", limit=1_000):
                if hook.id == webhook_id and hook.status != "pending":
                    return hook
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(done(), within)


async def until(check: Callable[[], Any], within: float = 15.0) -> Any:
    async def poll() -> Any:
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), within)


async def contact_texts(store: Store, conversation: str) -> list[str]:
    execution = await store.latest_execution("acme", conversation)
    return [m.text for m in await store.inbox_for(execution.id)]


async def test_a_refused_message_does_not_hold_the_others_back(
    tmp_path: Path, standin: GraphStandIn
) -> None:
    """A caption over the inbound model's bound is skipped (noted on the body, WARN);
    the next message of the same body is delivered."""
    standin.media["9"] = {"url": "https://lookaside.example.com/9", "mime_type": "image/jpeg"}
    url = f"sqlite:///{tmp_path / 't.db'}"
    async with served(tmp_path, url, settings(standin)) as app:
        first = await receive(app, wa.text("wamid.oi", "oi", wa_id=CONTACT))
        assert (await settled(app, first)).last_error is None
        too_long = wa.image("wamid.big", "9", caption="x" * 2_000, wa_id=CONTACT)
        hook = await settled(
            app, await receive(app, too_long, wa.text("wamid.name", "Ana", wa_id=CONTACT))
        )
        assert hook.status == "done"
        assert hook.last_error is not None and "wamid.big: media.caption" in hook.last_error
        conversation = f"wa:{wa.PHONE_NUMBER_ID}:{CONTACT}"
        assert await contact_texts(store_of(app), conversation) == ["oi", "Ana"]


async def test_an_unreadable_body_fails_at_once(tmp_path: Path, standin: GraphStandIn) -> None:
    """A stored body that is not JSON cannot get better: failed on its first claim."""
    async with served(tmp_path, f"sqlite:///{tmp_path / 't.db'}", settings(standin)) as app:
        store = store_of(app)
        webhook_id = await store.receive_channel_webhook("whatsapp", b"\xff{", now=0.0)
        app.state.whatsapp.processor.wake()
        deep = await store.receive_channel_webhook("whatsapp", b"[" * 10**5 + b"]" * 10**5, now=0)
        app.state.whatsapp.processor.wake()
        for hook in [await settled(app, webhook_id), await settled(app, deep)]:
            assert (hook.status, hook.attempts) == ("failed", 1)
            assert hook.last_error is not None and hook.last_error.startswith("unreadable")


async def test_a_lookup_that_keeps_failing_is_given_up_and_kept(
    tmp_path: Path, standin: GraphStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Graph API answering 5xx for the media: retried with backoff, then failed
    after the attempts, with the update it stopped at; the message before it stays."""
    monkeypatch.setattr(whatsapp_webhooks, "MAX_ATTEMPTS", 3)
    # no media "7" in the stand-in: answered 404 (gone); a 500 is what retries, so the
    # lookup is made to time out instead (past timeout_seconds)
    standin.delay = 1.5
    async with served(tmp_path, f"sqlite:///{tmp_path / 't.db'}", settings(standin)) as app:
        hook = await settled(
            app,
            await receive(
                app,
                wa.text("wamid.oi", "oi", wa_id=CONTACT),
                wa.image("wamid.photo", "7", wa_id=CONTACT),
            ),
            within=30,
        )
        assert (hook.status, hook.attempts) == ("failed", 3)
        assert hook.last_error is not None and hook.last_error.startswith("gave up at update 1")
        conversation = f"wa:{wa.PHONE_NUMBER_ID}:{CONTACT}"
        assert await contact_texts(store_of(app), conversation) == ["oi"]
        assert len([r for r in standin.requests if r.method == "GET"]) == 3


async def test_a_body_waiting_for_its_retry_holds_its_contacts_later_bodies_back(
    tmp_path: Path, standin: GraphStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's case: the contact's image lookup fails (5xx), so its body is put
    back for a retry; the contact's next body, stored meanwhile, waits for it (never
    delivered first, its waiting not counted as attempts), while another contact's
    body goes at once. Once the lookup answers, the inbox has the contact's order."""
    monkeypatch.setattr(whatsapp_webhooks, "MAX_ATTEMPTS", 10_000)  # retried till let go
    standin.media["img"] = {"url": "https://lookaside.example.com/img", "mime_type": "image/jpeg"}
    standin.refuse_media["img"] = Refusal(131000, 500)
    config = settings(standin, backoff_seconds=0.05, max_backoff_seconds=0.1)
    async with served(tmp_path, f"sqlite:///{tmp_path / 't.db'}", config) as app:
        store = store_of(app)
        first = await receive(
            app,
            wa.text("wamid.espera", "espera", wa_id=CONTACT),
            wa.image("wamid.img", "img", wa_id=CONTACT),
        )

        async def retrying(webhook_id: int, attempts: int) -> bool:
            hooks = {h.id: h for h in await store.channel_webhooks("whatsapp")}
            hook = hooks[webhook_id]
            return hook.status == "pending" and hook.attempts >= attempts

        await until(lambda: retrying(first, 1))
        then = await receive(app, wa.text("wamid.depois", "depois", wa_id=CONTACT))
        other = await receive(
            app, wa.text("wamid.oi", "oi", wa_id=OTHER_CONTACT), wa_id=OTHER_CONTACT
        )
        assert (await settled(app, other)).status == "done"  # not held back
        await until(lambda: retrying(first, 4))  # retried past the later body's arrival
        hooks = {h.id: h for h in await store.channel_webhooks("whatsapp")}
        assert hooks[then].status == "pending"
        assert hooks[then].attempts <= 1  # a claim beside its elder, given back uncounted
        conversation = f"wa:{wa.PHONE_NUMBER_ID}:{CONTACT}"
        assert await contact_texts(store, conversation) == ["espera"]
        del standin.refuse_media["img"]
        done = [await settled(app, first), await settled(app, then)]
        assert [h.status for h in done] == ["done", "done"]
        assert done[1].attempts == 1  # claimed once for good: held back, never counted
        texts = await until(lambda: _all(store, conversation, 3))
        assert texts == ["espera", "[image]", "depois"]


async def test_two_processes_share_one_postgres_store(
    tmp_path: Path, standin: GraphStandIn, postgres_cluster: PgCluster
) -> None:
    """Two served apps on one database: every body is processed once, and a contact's
    messages, sent in six bodies to either, are kept in the order they were stored."""
    name = "wa_shared"
    await postgres_cluster.create_database_async(name)
    url = postgres_cluster.url(name)
    migrating = PostgresStore(url, auto_migrate=True)
    await migrating.migrate()
    await migrating.close()
    config = settings(standin)
    async with (
        served(tmp_path, url, config) as one,
        served(tmp_path / "two", url, config) as two,
    ):
        ids = [await receive(one, wa.text("wamid.hold", "espera", wa_id=CONTACT))]
        for i in range(5):
            app = (one, two)[i % 2]
            ids.append(await receive(app, wa.text(f"wamid.{i}", f"nome {i}", wa_id=CONTACT)))
        hooks = [await settled(one, webhook_id) for webhook_id in ids]
        assert [h.status for h in hooks] == ["done"] * 6
        assert [h.attempts for h in hooks] == [1] * 6  # each taken once
        conversation = f"wa:{wa.PHONE_NUMBER_ID}:{CONTACT}"
        texts = await until(lambda: _all_six(store_of(one), conversation))
        assert texts == ["espera", "nome 0", "nome 1", "nome 2", "nome 3", "nome 4"]


async def _all_six(store: Store, conversation: str) -> list[str] | None:
    return await _all(store, conversation, 6)


async def _all(store: Store, conversation: str, count: int) -> list[str] | None:
    texts = await contact_texts(store, conversation)
    return texts if len(texts) == count else None
