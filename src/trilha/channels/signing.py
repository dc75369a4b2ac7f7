"""Signs the webhooks trilha sends (the channel's messages, the desk's handoffs, the
alerts) as the Standard Webhooks specification says, so a receiver can tell trilha's
calls from anyone's who learnt its URL, and a replayed one from a fresh one.

Three headers per request: ``webhook-id`` (the same on every retry of one message, so
the receiver can drop a repeat), ``webhook-timestamp`` (unix seconds, when this
attempt was signed: a receiver refuses one too old) and ``webhook-signature``, one
``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` per secret. During a rotation the
configuration holds the new secret and the old one, and every request is signed with
both, so a receiver holding either accepts it; the old one is dropped once every
receiver has the new one.

The signing itself is the specification's reference library (``standardwebhooks``):
the exact bytes sent are signed, so the body is serialised once, here.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from standardwebhooks import Webhook

from trilha.config import expand_env
from trilha.errors import ConfigError

#: how a secret is written: ``whsec_`` and the key's bytes in base64 (the specification's
#: form, which its libraries in every language read)
SECRET_PREFIX: Final = "whsec_"  # noqa: S105  # a prefix, not a secret
#: the specification asks for keys of 24 to 64 random bytes
MIN_KEY_BYTES: Final = 24
MAX_KEY_BYTES: Final = 64
#: a new secret and the one it replaces
MAX_SECRETS: Final = 2


def secret_key(secret: str, where: str) -> bytes:
    """The HMAC key of ``whsec_<base64>``; a ConfigError naming ``where`` otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"{where}: a signing secret starts with {SECRET_PREFIX!r}")
    try:
        key = b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the part after {SECRET_PREFIX!r} is not base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ConfigError(
            f"{where}: the key is {len(key)} bytes; use {MIN_KEY_BYTES} to {MAX_KEY_BYTES}"
            " random bytes"
        )
    return key


class WebhookSigner:
    """Signs one webhook's requests with its secrets (the first is the current one)."""

    def __init__(self, secrets: Sequence[str], where: str) -> None:
        if len(secrets) > MAX_SECRETS:
            raise ConfigError(
                f"{where}: at most {MAX_SECRETS} secrets (the new one and the one it replaces)"
            )
        self._hooks = [
            Webhook(secret_key(expand_env(secret, f"{where}[{i}]"), f"{where}[{i}]"))
            for i, secret in enumerate(secrets)
        ]

    @classmethod
    def of(cls, secrets: Sequence[str], where: str) -> WebhookSigner | None:
        """A signer, or ``None`` when the webhook has no secret (sent unsigned)."""
        return cls(secrets, where) if secrets else None

    def headers(self, message_id: str, body: bytes, now: float) -> dict[str, str]:
        """The three headers of one attempt at sending ``body`` as ``message_id``."""
        at = datetime.fromtimestamp(int(now), UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": " ".join(hook.sign(message_id, at, body) for hook in self._hooks),
        }


def json_body(value: Any) -> bytes:
    """``value`` as the JSON bytes a webhook sends (and signs)."""
    return orjson.dumps(value)


def signed_headers(
    signer: WebhookSigner | None, message_id: str, body: bytes, now: float
) -> dict[str, str]:
    """The content type, and the signature headers when the webhook is signed."""
    headers = {"content-type": "application/json"}
    if signer is not None:
        headers |= signer.headers(message_id, body, now)
    return headers
