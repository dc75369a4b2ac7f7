"""The WhatsApp channel's secrets come from the environment, and one that is set but
blank is refused at start: an empty app secret would let anyone sign a webhook body (an
HMAC with an empty key is easy to make), an empty verify token would pass Meta's
subscription check for anyone who sends an empty one."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from trilha.api.whatsapp_webhooks import WhatsAppInbound
from trilha.channels.whatsapp.inbound import signature_ok
from trilha.config import Config
from trilha.errors import ConfigError

SETTINGS = {
    "access_token": "${WA_T}",
    "app_secret": "${WA_S}",
    "verify_token": "${WA_V}",
    "numbers": [{"phone_number_id": "1001", "institution": "acme"}],
}


def config() -> Config:
    return Config.model_validate({"channel": {"kind": "whatsapp", "whatsapp": SETTINGS}})


@pytest.mark.parametrize(
    ("blank", "named"),
    [
        ("WA_S", "channel.whatsapp.app_secret"),
        ("WA_V", "channel.whatsapp.verify_token"),
        ("WA_T", "channel.whatsapp.access_token"),
    ],
)
def test_a_blank_secret_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, blank: str, named: str
) -> None:
    for name in ("WA_T", "WA_S", "WA_V"):
        monkeypatch.setenv(name, "" if name == blank else "set")
    with pytest.raises(ConfigError, match=rf"{named}: empty"):
        WhatsAppInbound.start(None, config())


def test_set_secrets_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("WA_T", "tok"), ("WA_S", "app-secret"), ("WA_V", "verify")):
        monkeypatch.setenv(name, value)
    inbound = WhatsAppInbound.start(None, config())
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    good = "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    empty = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    assert signature_ok(inbound.app_secret, body, good)
    assert not signature_ok(inbound.app_secret, body, empty)
