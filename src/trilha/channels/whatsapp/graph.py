"""The Graph API calls the WhatsApp channel makes, and what Meta's errors mean for a retry.

Meta answers a refused call with ``{"error": {"code": 130429, "message": ..., "error_data":
{"details": ...}, ...}}``. :func:`classify` turns its code (or, without one, the HTTP
status) into what the dispatcher does with the message:

* ``throttled``: ``130429`` (the number's throughput), ``131056`` (too many messages to
  one contact), ``131048`` (spam rate), ``80007`` and ``4`` (the account's call rate):
  back off and try again;
* ``outside_window``: ``131047``, the contact's 24-hour window is closed; only a
  template may start the conversation again;
* ``permanent``: ``131026`` (undeliverable) and the other documented refusals of the
  message itself (bad parameters, a template that does not exist): trying again
  sends the same refusal, so the message is dead at once with the reason;
* ``transient``: 5xx, a timeout, a connection refused, and Meta's own "try again"
  codes (``1``, ``2``, ``131000``, ``131016``, ``133004``...): retried with backoff.

The access token travels only in the ``Authorization`` header and never in an error's
text, a log line or the trail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from trilha.config import WhatsAppConfig, expand_secret
from trilha.errors import ChannelError

FailureKind = Literal["throttled", "outside_window", "permanent", "transient"]

THROTTLED: Final = frozenset({4, 80007, 130429, 131048, 131056})
OUTSIDE_WINDOW: Final = frozenset({131047})
#: Meta's "temporary, try again" codes
TRANSIENT: Final = frozenset({1, 2, 17, 341, 131000, 131016, 133004})
#: refusals of the whole account, not of the message (368 temporarily blocked for a
#: policy, 131031 account locked, 131042 a payment issue): every queued message would
#: die of one, so they wait for the account to be put right, as token errors do
ACCOUNT: Final = frozenset({368, 131031, 131042})
#: codes about the access token: an operator fixes it, and messages must still be there
AUTH: Final = frozenset({0, 10, 102, 190, 200})
#: a media id as Meta gives it (digits today); anything else never reaches a URL path
MEDIA_ID: Final = re.compile(r"[0-9A-Za-z_-]{1,128}")
#: the longest error text kept from an answer (Meta's title and details, not a page)
MAX_DETAIL: Final = 300
#: seconds to wait before a retry, by code: Meta's pair rate limit lets one message
#: through to the same contact about every 6 seconds
RETRY_AFTER: Final = {131056: 6.0}
#: the longest ``Retry-After`` taken from an answer
MAX_RETRY_AFTER: Final = 3_600.0


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ``GET /{media-id}`` says of a contact's file: a URL the access token can
    download for a few minutes, and its type."""

    id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


class GraphError(ChannelError):
    """The Graph API refused a call, or could not be reached."""

    code = "graph_error"

    @property
    def kind(self) -> FailureKind:
        kind = self.details.get("kind")
        return kind if kind in ("throttled", "outside_window", "permanent") else "transient"

    @property
    def meta_code(self) -> int | None:
        code = self.details.get("code")
        return code if isinstance(code, int) else None


def classify(status: int, code: int | None) -> FailureKind:
    """What a refusal means for the message (see the module's notes)."""
    if code in THROTTLED or status == 429:
        return "throttled"
    if code in OUTSIDE_WINDOW:
        return "outside_window"
    if (
        code in TRANSIENT
        or code in AUTH
        or code in ACCOUNT
        or status >= 500
        or status in (401, 403, 408)
    ):
        return "transient"
    if 400 <= status < 500:
        return "permanent"
    return "transient"


def graph_error(what: str, response: httpx.Response) -> GraphError:
    """The error an answer of ``response.status_code`` >= 300 carries, classified."""
    error: Mapping[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    title = str(error.get("message") or error.get("title") or "")[:MAX_DETAIL]
    data = error.get("error_data")
    details = str(data.get("details") or "") if isinstance(data, Mapping) else ""
    kind = classify(response.status_code, code)
    more: dict[str, Any] = {}
    retry_after = retry_after_of(response, code)
    if retry_after is not None and kind in ("throttled", "transient"):
        more["retry_after"] = retry_after
    said = f"{what} answered {response.status_code}"
    if code is not None:
        said += f" (code {code})"
    if title:
        said += f": {title}"
    if details:
        said += f" ({details[:MAX_DETAIL]})"
    return GraphError(said, status=response.status_code, code=code, kind=kind, **more)


def retry_after_of(response: httpx.Response, code: int | None) -> float | None:
    """How long to wait before trying again: the answer's ``Retry-After`` (seconds,
    bounded), else what the code calls for (:data:`RETRY_AFTER`), else ``None``."""
    header = response.headers.get("retry-after", "").strip()
    if header.isdigit():
        return min(float(header), MAX_RETRY_AFTER)
    return RETRY_AFTER.get(code) if code is not None else None


class GraphApi:
    """One HTTP client for the Graph API, shared by sending, marking read and media
    lookups; each call names its number, whose token it carries."""

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str,
        tokens: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._default_token = access_token
        self._tokens = dict(tokens or {})
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False, limits=limits)

    @classmethod
    def from_config(cls, settings: WhatsAppConfig) -> GraphApi:
        """The client ``[channel.whatsapp]`` describes, its tokens read from the
        environment (:class:`~trilha.errors.ConfigError` naming a missing or blank one)."""
        where = "channel.whatsapp"
        return cls(
            settings.api_base_url,
            access_token=expand_secret(settings.access_token, f"{where}.access_token"),
            tokens={
                n.phone_number_id: expand_secret(
                    n.access_token, f"{where}.numbers[{i}].access_token"
                )
                for i, n in enumerate(settings.numbers)
                if n.access_token is not None
            },
            timeout=settings.timeout_seconds,
        )

    def _auth(self, phone_number_id: str) -> dict[str, str]:
        token = self._tokens.get(phone_number_id, self._default_token)
        return {"Authorization": f"Bearer {token}"}

    async def _call(
        self, what: str, method: str, path: str, phone_number_id: str, **kwargs: Any
    ) -> dict[str, Any]:
        url = f"{self.base_url}/{path}"
        try:
            response = await self._client.request(
                method, url, headers=self._auth(phone_number_id), **kwargs
            )
        except httpx.TimeoutException as exc:
            raise GraphError(f"{what}: {exc}", reason="timeout", kind="transient") from exc
        except httpx.ConnectError as exc:
            raise GraphError(f"{what}: {exc}", reason="connection", kind="transient") from exc
        except httpx.HTTPError as exc:
            raise GraphError(f"{what}: {exc}", kind="transient") from exc
        if response.status_code >= 300:
            raise graph_error(what, response)
        try:
            body = response.json()
        except ValueError as exc:
            raise GraphError(
                f"{what} answered {response.status_code} with no JSON",
                status=response.status_code,
                kind="transient",
            ) from exc
        return body if isinstance(body, dict) else {}

    async def send(self, phone_number_id: str, body: Mapping[str, Any]) -> str:
        """POST ``/{phone_number_id}/messages``; the message's ``wamid``."""
        answer = await self._call(
            "Graph API /messages",
            "POST",
            f"{phone_number_id}/messages",
            phone_number_id,
            json=dict(body),
        )
        messages = answer.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], Mapping):
            wamid = messages[0].get("id")
            if isinstance(wamid, str):
                return wamid
        return ""

    async def mark_read(self, phone_number_id: str, wamid: str) -> None:
        """Mark a contact's message read (its blue ticks)."""
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        await self._call(
            "Graph API /messages (read)",
            "POST",
            f"{phone_number_id}/messages",
            phone_number_id,
            json=body,
        )

    async def media(self, phone_number_id: str, media_id: str) -> MediaInfo:
        """``GET /{media-id}``: where a contact's file can be downloaded."""
        if not MEDIA_ID.fullmatch(media_id):
            raise GraphError(f"media id {media_id[:80]!r} is not one Meta gives", kind="permanent")
        answer = await self._call(
            "Graph API media",
            "GET",
            media_id,
            phone_number_id,
            params={"phone_number_id": phone_number_id},
        )
        url = answer.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise GraphError(f"Graph API media {media_id}: no url in the answer", kind="transient")
        size = answer.get("file_size")
        return MediaInfo(
            id=str(answer.get("id") or media_id),
            url=url,
            mime_type=answer.get("mime_type") if isinstance(answer.get("mime_type"), str) else None,
            sha256=answer.get("sha256") if isinstance(answer.get("sha256"), str) else None,
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
