"""Meta's ``131047`` in a ``failed`` status overtaking the send's own bookkeeping, in the
served app (its lifespan, a real SQLite store, the Graph API stand-in): the status
arrives while the dispatcher still holds the message (Meta answered the send, trilha has
not recorded it sent), so nothing is switched under the dispatcher's feet; the body is
retried, and once the send is recorded the message goes out again as its template."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_whatsapp_processor import settled, store_of, until

import whatsapp_webhooks as wa  # tests/ is on sys.path (rootdir mode)
from graph_standin import GraphStandIn, graph_standin
from trilha.api.app import ServeOptions, create_app, state_of
from trilha.config import Config

CONTACT = "5511987654321"
MENU = {
    "id": "wa_menu",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Como posso ajudar?", "variable": "choice",
         "buttons": [{"id": "agendar", "title": "Agendar"}],
         "template": {"name": "menu_inicial", "language": "pt_BR"}, "next": "bye"},
        {"id": "bye", "type": "end", "text": "Até logo"},
    ],
}  # fmt: skip
REENGAGEMENT = [{"code": 131047, "title": "Re-engagement message"}]


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as made:
        yield made


def settings(standin: GraphStandIn) -> Config:
    return Config.model_validate(
        {
            "channel": {
                "kind": "whatsapp",
                "backoff_seconds": 0.1,
                "max_backoff_seconds": 0.2,
                "whatsapp": {
                    "access_token": "token",
                    "app_secret": "secret",
                    "verify_token": "verify",
                    "api_base_url": standin.url,
                    "timeout_seconds": 3,
                    "numbers": [{"phone_number_id": wa.PHONE_NUMBER_ID, "institution": "acme"}],
                },
            },
            "engine": {"heartbeat_seconds": 0.1},
            "triggers": [{"institution": "acme", "keywords": ["oi"], "flowId": "wa_menu"}],
        }
    )


async def keep(app: Any, body: dict[str, Any]) -> int:
    """Keep a body as the route does (with its conversations), and wake the processor."""
    webhook_id = await store_of(app).receive_channel_webhook(
        "whatsapp",
        wa.encode(body),
        now=state_of(app).runtime.engine.clock.now(),
        keys=wa.keys(body),
    )
    app.state.whatsapp.processor.wake()
    return webhook_id


async def test_a_status_overtaking_the_send_waits_for_it(
    tmp_path: Path, standin: GraphStandIn
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "wa_menu.json").write_text(json.dumps(MENU), encoding="utf-8")
    app = create_app(
        ServeOptions(store_url=f"sqlite:///{tmp_path / 't.db'}", flows_dir=flows),
        config=settings(standin),
    )
    standin.delay = 1.0  # Meta takes its time answering: the dispatcher holds the message
    async with app.router.lifespan_context(app):
        hello = wa.notification(
            wa.value(messages=[wa.text("wamid.oi", "oi", wa_id=CONTACT)], wa_id=CONTACT)
        )
        await keep(app, hello)

        async def menu_out() -> Any:
            sends = standin.sends()
            return sends[0] if sends else None

        menu = await until(menu_out)
        key = menu.body["biz_opaque_callback_data"]
        status = wa.status("wamid.menu", "failed", key=key, recipient=CONTACT, errors=REENGAGEMENT)
        hook = await settled(app, await keep(app, wa.notification(wa.value(statuses=[status]))))
        assert hook.status == "done"
        assert hook.attempts > 1  # asked again while the dispatcher held the message

        async def template_out() -> Any:
            return standin.sends()[1:]

        (template,) = await until(template_out)
        assert template.body["type"] == "template"
        assert template.body["biz_opaque_callback_data"] == key
        store = store_of(app)
        execution = await store.latest_execution("acme", f"wa:{wa.PHONE_NUMBER_ID}:{CONTACT}")
        resent = [
            r for r in await store.logs(execution.id) if r.message == "message.resent_as_template"
        ]
        assert len(resent) == 1 and resent[0].context["from"] == "sent"
