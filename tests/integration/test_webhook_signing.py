"""Every webhook trilha sends (the channel's messages, the desk's handoffs, the alerts)
is signed as the Standard Webhooks specification says, and checked here the way a
receiver checks it: by the specification's reference library, over the raw bytes a
real HTTP server on 127.0.0.1 received. A repeat of one message keeps its
``webhook-id`` and is signed again; during a rotation both secrets sign it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from trilha.channels.desk import HandoffDesk
from trilha.channels.memory import MemoryChannel
from trilha.channels.signing import WebhookSigner
from trilha.channels.webhook import WebhookChannel
from trilha.config import (
    AlertWebhookConfig,
    ChannelConfig,
    Config,
    DependencyConfig,
    load_config,
)
from trilha.core.alerts import AlertState, AlertStatus
from trilha.core.execution import OutboundMessage
from trilha.engine.dispatcher import Dispatcher
from trilha.errors import ChannelError, ConfigError
from trilha.observability.alerts import WebhookSink
from trilha.runtime import make_channel, make_desk, warn_unsigned_webhooks


def secret(fill: int) -> str:
    """A valid secret: 32 bytes of ``fill``."""
    return "whsec_" + base64.b64encode(bytes([fill]) * 32).decode()


NEW, OLD, STRANGER = secret(1), secret(2), secret(3)


def verified(request: dict[str, Any], key: str) -> Any:
    """The body, as a receiver holding ``key`` accepts it (raises if it would not)."""
    return Webhook(key).verify(request["raw"], request["headers"])


def test_the_signature_is_the_specifications() -> None:
    """The specification's own example: this secret, id, timestamp and body sign so."""
    signer = WebhookSigner(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "channel")
    assert signer.headers("msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}', 1614265330) == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


@pytest.mark.parametrize(
    ("secrets", "error"),
    [
        (["sk_live_abc"], r"channel.signing_secrets\[0\]: a signing secret starts with 'whsec_'"),
        (["whsec_not base64!"], r"signing_secrets\[0\]: the part after 'whsec_' is not base64"),
        (["whsec_" + base64.b64encode(b"short").decode()], r"the key is 5 bytes; use 24 to 64"),
        ([NEW, "${TRILHA_TEST_UNSET_SECRET}"], r"signing_secrets\[1\]: environment variable"),
    ],
)
def test_a_bad_secret_is_refused_at_start_by_name(secrets: list[str], error: str) -> None:
    config = Config(
        channel=ChannelConfig(kind="webhook", url="http://127.0.0.1:9/m", signing_secrets=secrets)
    )
    with pytest.raises(ConfigError, match=error):
        make_channel(config)


def test_more_than_two_secrets_is_refused_by_name(tmp_path: Path) -> None:
    """Two is a rotation (the new secret and the one it replaces); three is a mistake."""
    toml = tmp_path / "trilha.toml"
    toml.write_text(
        f'[channel]\nkind = "webhook"\nurl = "http://127.0.0.1:9/m"\n'
        f'signing_secrets = ["{NEW}", "{OLD}", "{STRANGER}"]\n'
    )
    with pytest.raises(ConfigError, match=r"channel\.signing_secrets"):
        load_config(toml)


def test_a_secret_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRILHA_TEST_SECRET", NEW)
    signer = WebhookSigner(["${TRILHA_TEST_SECRET}"], "channel.signing_secrets")
    headers = signer.headers("msg_1", b"{}", 1_800_000_000)
    assert (
        headers["webhook-signature"]
        == WebhookSigner([NEW], "x").headers("msg_1", b"{}", 1_800_000_000)["webhook-signature"]
    )


def message(key: str = "ex1:3:0") -> OutboundMessage:
    return OutboundMessage(
        execution_id="ex1",
        institution_id="acme",
        conversation_id="wa:5511987654321",
        contact_id="5511987654321",
        text="Olá, Ana! Seu agendamento está confirmado.",
        channel="webhook",
        idempotency_key=key,
        created_at=1_800_000_000.0,
        step_seq=3,
    )


async def test_the_channel_signs_each_message_and_a_retry_keeps_its_id(
    http_server: Any,
) -> None:
    """The message's idempotency key is its webhook-id; the repeat after a 500 carries the
    same id, a signature of its own, and verifies for a receiver holding either secret of
    a rotation, never for a stranger's or over a changed body."""
    http_server.route("POST", "/messages", body={"ok": True})
    http_server.fail_first("POST", "/messages", 1, status=500)
    config = Config(
        channel=ChannelConfig(
            kind="webhook", url=http_server.url + "/messages", signing_secrets=[NEW, OLD]
        )
    )
    channel = make_channel(config)
    assert isinstance(channel, WebhookChannel)
    try:
        with pytest.raises(ChannelError, match="answered 500"):
            await channel.deliver(message())
        await channel.deliver(message())
    finally:
        await channel.aclose()
    first, second = http_server.requests
    for request in (first, second):
        assert request["headers"]["webhook-id"] == "ex1:3:0"
        assert request["headers"]["Idempotency-Key"] == "ex1:3:0"
        assert len(request["headers"]["webhook-signature"].split(" ")) == 2  # both secrets
        for key in (NEW, OLD):
            body = verified(request, key)
            assert body["text"] == "Olá, Ana! Seu agendamento está confirmado."
        with pytest.raises(WebhookVerificationError):
            verified(request, STRANGER)
        tampered = dict(request, raw=request["raw"].replace(b"Ana", b"Eve"))
        with pytest.raises(WebhookVerificationError):
            verified(tampered, NEW)
    assert first["raw"] == second["raw"]


async def test_handoff_notices_are_signed(harness: Any, http_server: Any) -> None:
    """The desk's notice, delivered by the dispatcher, verifies with the handoff
    dependency's secret."""
    http_server.route("POST", "/handoffs", body={"ok": True})
    await harness.publish(
        {"id": "h", "start": "x", "nodes": [{"id": "x", "type": "handoff", "queue": "vip"}]}
    )
    ex = await harness.start("h")
    await harness.settle()
    config = Config(
        dependencies={
            "handoff": DependencyConfig(
                base_url=http_server.url + "/handoffs", signing_secrets=[NEW]
            )
        }
    )
    desk = make_desk(config)
    assert isinstance(desk, HandoffDesk)
    dispatcher = Dispatcher(harness.store, MemoryChannel(), clock=harness.clock, desk=desk)
    try:
        assert await dispatcher.run_once() == 1
    finally:
        await desk.aclose()
    (request,) = [r for r in http_server.requests if r["path"] == "/handoffs"]
    body = verified(request, NEW)
    assert body["executionId"] == ex.id and body["queue"] == "vip"
    assert request["headers"]["webhook-id"] == request["headers"]["Idempotency-Key"]


def alert(status: AlertStatus) -> AlertState:
    return AlertState(
        rule="memory",
        instance="host-1",
        status=status,
        severity="warning",
        value=0.93,
        threshold=0.9,
        summary="host memory in use 93% (threshold 90%)",
        active_at=1_800_000_000.0,
        fired_at=1_800_000_000.0,
        resolved_at=None,
        updated_at=1_800_000_000.0,
    )


async def test_alert_notifications_are_signed_and_retries_keep_their_id(
    http_server: Any,
) -> None:
    """Each notification has an id of its own, kept by its retry; the receiver verifies
    every POST."""
    http_server.route("POST", "/alerts", body={"ok": True})
    http_server.fail_first("POST", "/alerts", 1, status=503)
    sink = WebhookSink(
        AlertWebhookConfig(url=http_server.url + "/alerts", signing_secrets=[NEW]),
        backoff_seconds=0.01,
    )
    sink.send(alert(AlertStatus.FIRING))
    sink.send(alert(AlertStatus.RESOLVED))
    await sink.aclose(grace_seconds=10)
    assert sink.delivered == 2
    failed, firing, resolved = http_server.requests
    assert [verified(r, NEW)["status"] for r in (failed, firing, resolved)] == [
        "firing",
        "firing",
        "resolved",
    ]
    ids = [r["headers"]["webhook-id"] for r in (failed, firing, resolved)]
    assert ids[0] == ids[1] != ids[2] and all(i.startswith("msg_") for i in ids)


async def test_without_secrets_nothing_is_signed_and_the_start_says_so(
    http_server: Any, process_log: Any
) -> None:
    """An unsigned webhook still works (a receiver not checking yet), and each one is
    named at start with how to sign it."""
    http_server.route("POST", "/messages", body={"ok": True})
    config = Config(
        channel=ChannelConfig(kind="webhook", url=http_server.url + "/messages"),
        dependencies={"handoff": DependencyConfig(base_url=http_server.url + "/h")},
    )
    channel = make_channel(config)
    try:
        await channel.deliver(message())
    finally:
        await channel.aclose()
    (request,) = http_server.requests
    assert "webhook-signature" not in request["headers"]
    assert request["body"]["idempotencyKey"] == "ex1:3:0"
    warn_unsigned_webhooks(config)
    warned = [x for x in process_log.lines() if x["message"] == "webhook.unsigned"]
    assert [x["context"]["metadata"]["webhook"] for x in warned] == [
        "channel",
        "dependencies.handoff",
    ]
    signed = Config(
        channel=ChannelConfig(kind="webhook", url="http://127.0.0.1:9/m", signing_secrets=[NEW])
    )
    before = len(process_log.lines())
    warn_unsigned_webhooks(signed)
    assert not [x for x in process_log.lines()[before:] if x["message"] == "webhook.unsigned"]
