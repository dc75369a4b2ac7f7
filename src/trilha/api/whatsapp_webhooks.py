"""Meta's webhook bodies, processed in the background of ``trilha serve``.

``POST /v1/channels/whatsapp/webhook`` (:mod:`trilha.api.routes.whatsapp`) keeps each
verified body in the store and answers 200 at once, so Meta never retries for trilha's
own slowness. :class:`WebhookProcessor`, a task of every ``trilha serve`` process with
``[channel] kind = "whatsapp"``, claims the stored bodies under a lease (several
processes may share one store: a body is leased to one), a contact's bodies in the
order they were stored (a body waits while an older one of its conversation is
pending, being processed or waiting for its retry; other contacts' bodies go on),
reads each one (:func:`trilha.channels.whatsapp.inbound.parse_webhook`)
and handles its updates in order:

* a contact's message goes to the institution of the number it was sent to
  (``[[channel.whatsapp.numbers]]``; a number that is not there is ignored with a
  WARN line: no institution receives it), as conversation ``wa:{phone_number_id}:{wa_id}``
  and contact ``wa_id``, with Meta's ``wamid`` as its ``messageId`` (a repeated
  webhook is a duplicate, ignored). A media message's URL is looked up first (Graph
  API ``GET /{media-id}``). It is delivered exactly as ``POST
  /v1/conversations/{id}/messages`` delivers (:func:`~trilha.api.routes.messages.deliver_message`):
  to the active execution, else through the institution's triggers; one that neither
  takes is dropped with an INFO line, as the route answers 404 and stores nothing;
* a status (``sent``, ``delivered``, ``read``, ``failed``) becomes a delivery receipt
  of the outbound message whose idempotency key Meta echoes as
  ``biz_opaque_callback_data``, through the store call of ``POST
  /v1/conversations/{id}/statuses``; one without it, or naming no message of that
  conversation, is ignored at DEBUG. A ``failed`` one with Meta's ``131047`` (the
  contact's 24-hour window was closed) has the outbox send the message's template
  instead, once (:meth:`~trilha.store.base.Store.resend_as_template`), as the channel
  does when the send itself is answered so; one with no template stays failed, with a
  ``message.outside_window`` line;
* a message the inbound model refuses (a field over its bound), or whose file Meta
  says is gone, is skipped with a WARN line and noted on the body; the others go on.

A transient failure (the Graph API away, the store's queue over its bound, a
conversation that kept changing) stops the body where it is: it is retried with
backoff (``[channel] backoff_seconds`` doubling up to ``max_backoff_seconds``) from
that update, up to :data:`MAX_ATTEMPTS` claims, then kept as ``failed`` with an ERROR
line. Its conversations' later bodies wait for it meanwhile: the route stores each
body with the conversations it names, and the store's claim holds a body back while
an older pending one names any of them (the later bodies claimed with it are given
back uncounted, ``_chain``). Processed bodies are deleted after :data:`RETAIN_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from trilha.api.app import state_of
from trilha.api.problems import Problem
from trilha.api.routes.messages import InboundMessageIn, deliver_message
from trilha.api.wire import storable
from trilha.channels.whatsapp.graph import GraphApi, GraphError
from trilha.channels.whatsapp.inbound import (
    RECEIPTS,
    WEBHOOK_CHANNEL,
    Ignored,
    MessageUpdate,
    StatusUpdate,
    Update,
    conversation_keys,
    parse_webhook,
)
from trilha.config import Config, WhatsAppConfig, expand_secret
from trilha.core.flow import format_loc
from trilha.core.reengage import REENGAGEMENT_CODE
from trilha.errors import StoreError, TrilhaError
from trilha.observability.logging import get_logger
from trilha.store.base import ChannelWebhook, Store

log = get_logger("trilha.whatsapp")

#: how the trail names who started an execution from a WhatsApp message
ACTOR: Final = "channel:whatsapp"
#: bodies claimed at once
BATCH: Final = 32
#: how often the store is asked for bodies another process received
POLL_SECONDS: Final = 0.5
#: claims of one body before it is given up (``failed``, kept): with the default
#: backoff, some two hours of a Graph API or a store that keeps failing
MAX_ATTEMPTS: Final = 30
#: how long processed bodies are kept (what Meta sent, for an operator to read)
RETAIN_SECONDS: Final = 7 * 86_400
#: how often processed bodies past their time are deleted
PURGE_EVERY_SECONDS: Final = 600.0
#: heartbeats missed before the store takes the processor for dead (as workers')
HEARTBEAT_MISSES: Final = 3
#: the longest profile name kept as ``contact.name`` (WhatsApp's own is short)
MAX_PROFILE_NAME: Final = 200
#: the longest wamid a receipt keeps (Meta's are some 60 characters)
MAX_WAMID: Final = 200
#: how far ahead of the clock a status's time may be before the clock's is used
AHEAD_SECONDS: Final = 86_400.0


class Later(Exception):
    """The body cannot go on now (a transient failure): retry it from this update."""


@dataclass(slots=True)
class WhatsAppInbound:
    """What the webhook's routes need: the secrets they check, and the processor to wake."""

    app_secret: str
    verify_token: str
    processor: WebhookProcessor

    @classmethod
    def start(cls, app: Any, config: Config) -> WhatsAppInbound:
        """The inbound side of ``[channel.whatsapp]``, secrets read from the environment
        (:class:`~trilha.errors.ConfigError` naming a missing one)."""
        settings = config.channel.whatsapp
        assert settings is not None  # ChannelConfig requires it with kind "whatsapp"
        where = "channel.whatsapp"
        graph = GraphApi.from_config(settings)
        processor = WebhookProcessor(app, settings, graph, config)
        return cls(
            expand_secret(settings.app_secret, f"{where}.app_secret"),
            expand_secret(settings.verify_token, f"{where}.verify_token"),
            processor,
        )


class WebhookProcessor:
    """Claims stored bodies and delivers what they say (see the module's notes)."""

    def __init__(
        self,
        app: Any,
        settings: WhatsAppConfig,
        graph: GraphApi,
        config: Config,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.settings = settings
        self.graph = graph
        self.lease_seconds = config.engine.lease_seconds
        self.heartbeat_seconds = config.engine.heartbeat_seconds
        self.backoff_seconds = config.channel.backoff_seconds
        self.max_backoff_seconds = config.channel.max_backoff_seconds
        self.owner = f"webhooks-{uuid.uuid4().hex[:12]}"
        self._rng = rng
        self._woken = asyncio.Event()
        self._purged_at = float("-inf")

    @property
    def store(self) -> Store:
        return state_of(self.app).runtime.store

    def now(self) -> float:
        return state_of(self.app).runtime.engine.clock.now()

    def wake(self) -> None:
        """A body was stored here: process it now rather than at the next poll."""
        self._woken.set()

    async def aclose(self) -> None:
        await self.graph.aclose()

    async def run_forever(self, stop: asyncio.Event) -> None:
        beat = asyncio.create_task(self._beat(stop))
        away = False
        try:
            while not stop.is_set():
                try:
                    handled = await self.run_once()
                    await self._purge()
                    if away:
                        log.info("whatsapp.store_back", owner=self.owner)
                    away = False
                except StoreError as exc:
                    if not away:  # once per outage; the lease keeps the bodies safe
                        log.error("whatsapp.store_unavailable", owner=self.owner, error=str(exc))
                    away, handled = True, 0
                except Exception:  # a bug must not end inbound processing for good
                    log.exception("whatsapp.webhook_loop_failed", owner=self.owner)
                    handled = 0
                if not handled:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._woken.wait(), POLL_SECONDS)
                    self._woken.clear()
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            # its leases are free at once for another process, not when they expire
            with contextlib.suppress(StoreError):
                now = self.now()
                await self.store.heartbeat([self.owner], now=now, alive_until=now)

    async def run_once(self) -> int:
        """Claim due bodies and process them in order; how many were claimed."""
        claimed = await self.store.claim_channel_webhooks(
            WEBHOOK_CHANNEL,
            self.owner,
            now=self.now(),
            lease_seconds=self.lease_seconds,
            limit=BATCH,
        )
        # contacts are independent: each chain of bodies (those sharing a conversation,
        # in the order stored) runs beside the others, so one busy contact, or one
        # institution's flood, does not queue every other contact's reply behind it
        bodies = [(hook, read_body(hook)) for hook in claimed]  # each parsed once
        done = await asyncio.gather(
            *(self._chain(chain) for chain in chains(bodies)), return_exceptions=True
        )
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome  # a StoreError: the loop waits for the store
        return len(claimed)

    async def _chain(self, hooks: list[Body]) -> None:
        """Process one conversation's bodies in order, stopping at the first that is
        not finished (put back for its retry, crashed, or its lease lost): the later
        ones are given back unprocessed, their claim not counted, and the store holds
        them back until the older one is done or given up."""
        for position, (hook, read) in enumerate(hooks):
            try:
                finished = await self.process(hook, read)
            except StoreError:
                raise  # the loop waits for the store; the leases keep the bodies
            except Exception as exc:  # a bug: this body backs off (and is given up in
                # the end) rather than being claimed again at every lease, for ever
                log.exception("whatsapp.webhook_crashed", webhookId=hook.id)
                finished = await self._later(
                    hook, hook.progress, f"internal error: {type(exc).__name__}"
                )
            if not finished:
                rest = [later.id for later, _ in hooks[position + 1 :]]
                if rest:
                    await self.store.release_channel_webhooks(rest, owner=self.owner)
                    log.debug("whatsapp.webhooks_held", webhookId=hook.id, held=rest)
                return

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(StoreError):
                now = self.now()
                grace = HEARTBEAT_MISSES * self.heartbeat_seconds
                await self.store.heartbeat([self.owner], now=now, alive_until=now + grace)
            await asyncio.sleep(self.heartbeat_seconds)

    async def _purge(self) -> None:
        now = self.now()
        if now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        purged = await self.store.purge_channel_webhooks(now - RETAIN_SECONDS)
        if purged:
            log.info("whatsapp.webhooks_purged", count=purged)

    # one body -------------------------------------------------------------------------

    async def process(self, hook: ChannelWebhook, read: list[Update] | Exception) -> bool:
        """Handle the body's updates (``read``: :func:`read_body`'s) from its progress
        on; whether it is finished (``done`` or ``failed``) rather than put back for its
        retry."""
        if isinstance(read, Exception):  # JSON, Unicode, depth, or the bounds
            log.error("whatsapp.webhook_unreadable", webhookId=hook.id, error=str(read)[:300])
            return await self._settle(hook, "failed", f"unreadable: {str(read)[:300]}")
        updates = read
        notes: list[str] = []
        for index in range(hook.progress, len(updates)):
            try:
                note = await self._apply(updates[index])
            except Later as exc:
                return await self._later(hook, index, str(exc))
            if note is not None:
                notes.append(note)
        settled = await self._settle(hook, "done", "; ".join(notes) or None)
        log.debug("whatsapp.webhook_processed", webhookId=hook.id, updates=len(updates))
        return settled

    async def _later(self, hook: ChannelWebhook, index: int, error: str) -> bool:
        """Put the body back for its retry (False), or give it up past its attempts
        (True: it no longer holds its conversation's later bodies back)."""
        if hook.attempts >= MAX_ATTEMPTS:
            log.error(
                "whatsapp.webhook_failed",
                webhookId=hook.id,
                attempts=hook.attempts,
                update=index,
                error=error,
            )
            return await self._settle(hook, "failed", f"gave up at update {index}: {error}", index)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (hook.attempts - 1))
        delay = ceiling * (0.5 + 0.5 * self._rng())
        log.warning(
            "whatsapp.webhook_retry",
            webhookId=hook.id,
            attempt=hook.attempts,
            update=index,
            retryInSeconds=round(delay, 3),
            error=error,
        )
        now = self.now()
        await self.store.settle_channel_webhook(
            hook.id,
            owner=self.owner,
            now=now,
            status="pending",
            error=error,
            retry_at=now + delay,
            progress=index,
        )
        return False

    async def _settle(
        self, hook: ChannelWebhook, status: Any, note: str | None, progress: int = 0
    ) -> bool:
        """Settle the body; False when this process no longer held its lease."""
        if not await self.store.settle_channel_webhook(
            hook.id, owner=self.owner, now=self.now(), status=status, error=note, progress=progress
        ):
            # another process took the body over (this one was too slow for its lease)
            log.warning("whatsapp.webhook_lease_lost", webhookId=hook.id, owner=self.owner)
            return False
        return True

    async def _apply(self, update: Update) -> str | None:
        """Handle one update; a note for the body when something was skipped."""
        if isinstance(update, MessageUpdate):
            return await self._message(update)
        if isinstance(update, StatusUpdate):
            await self._status(update)
            return None
        return _ignored(update)

    async def _message(self, update: MessageUpdate) -> str | None:
        number = self.settings.number(update.phone_number_id)
        if number is None:
            log.warning(
                "whatsapp.unknown_number",
                phoneNumberId=update.phone_number_id,
                messageId=update.wamid[:200],
                hint="add it to [[channel.whatsapp.numbers]] with its institution",
            )
            return f"{update.wamid[:200]}: number {update.phone_number_id} is not configured"
        institution = number.institution
        conversation = update.conversation_id
        said = {
            "institutionId": institution,
            "conversationId": conversation,
            "contactId": update.wa_id,
            "messageId": update.wamid[:200],
        }
        content = update.content
        if update.media_id is not None:
            looked = await self._media(update, said)
            if looked is None:
                return f"{update.wamid[:200]}: media {update.media_id[:80]} not found"
            content = looked
        try:
            body = InboundMessageIn.model_validate(
                {
                    **content,
                    "messageId": update.wamid,
                    "contactId": update.wa_id,
                    "payload": update.payload,
                }
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            where = format_loc(tuple(error.get("loc", ()))) or "message"
            log.warning(
                "whatsapp.message_refused",
                **said,
                type=update.kind,
                field=where,
                error=str(error.get("msg")),
            )
            return f"{update.wamid[:200]}: {where}: {error.get('msg')}"
        try:
            done = await deliver_message(
                self.app, institution, conversation, body, actor=ACTOR, contact=_contact(update)
            )
        except Problem as exc:
            if exc.status == 404:  # no execution and no trigger: not stored, as the route
                log.info("whatsapp.message_dropped", **said, type=update.kind, reason=exc.detail)
                return None
            raise Later(exc.detail) from exc
        except StoreError:
            raise  # the loop waits for the store; the body's lease keeps it
        except TrilhaError as exc:  # a bound held for this message alone
            log.warning("whatsapp.message_refused", **said, type=update.kind, error=str(exc))
            return f"{update.wamid[:200]}: {exc}"
        result = done.result
        log.info(
            "whatsapp.message_received",
            **said,
            type=update.kind,
            executionId=result.message.execution_id,
            duplicate=result.status == "duplicate",
            started=done.match is not None,
        )
        return None

    async def _media(self, update: MessageUpdate, said: dict[str, str]) -> dict[str, Any] | None:
        """``update``'s content with the file's URL (and type, when the message had
        none); ``None`` when Meta says the file is not there; :class:`Later` when the
        Graph API could not answer."""
        assert update.media_id is not None
        try:
            info = await self.graph.media(update.phone_number_id, update.media_id)
        except GraphError as exc:
            if exc.kind == "permanent":
                log.warning(
                    "whatsapp.media_missing",
                    **said,
                    mediaId=update.media_id[:80],
                    error=str(exc),
                )
                return None
            reason = exc.details.get("reason")  # a timeout's own text is often empty
            why = f"{exc} ({reason})" if reason else str(exc)
            raise Later(f"media {update.media_id[:80]}: {why}") from exc
        media = {**update.content["media"], "url": info.url}
        if "mimeType" not in media and info.mime_type is not None:
            media["mimeType"] = info.mime_type
        return {**update.content, "media": media}

    async def _status(self, update: StatusUpdate) -> None:
        number = self.settings.number(update.phone_number_id)
        said = {"phoneNumberId": update.phone_number_id, "status": update.status[:40]}
        if number is None:
            log.warning("whatsapp.unknown_number", **said, hint="a status of another number")
            return
        if update.status not in RECEIPTS:
            log.debug("whatsapp.status_ignored", **said, reason="not a delivery status")
            return
        if update.key is None:
            log.debug("whatsapp.status_ignored", **said, reason="no biz_opaque_callback_data")
            return
        now = self.now()
        at = update.at if update.at is not None and update.at <= now + AHEAD_SECONDS else now
        result = await self.store.record_receipt(
            institution_id=number.institution,
            conversation_id=update.conversation_id,
            idempotency_key=update.key[:200],
            status=update.status,
            at=at,
            error=update.error if update.status == "failed" else None,
            now=now,
            message_id=update.wamid[:MAX_WAMID],
        )
        if result is None:
            log.debug(
                "whatsapp.status_ignored",
                **said,
                institutionId=number.institution,
                conversationId=update.conversation_id,
                reason="no such message in the conversation",
            )
            return
        if not result.duplicate:  # as POST .../statuses logs it
            (log.warning if update.status == "failed" else log.info)(
                "message.status",
                executionId=result.delivery.execution_id,
                institutionId=number.institution,
                conversationId=update.conversation_id,
                idempotencyKey=update.key[:200],
                status=update.status,
                delivery=result.delivery.receipt,
                error=update.error,
            )
        if update.status == "failed" and REENGAGEMENT_CODE in update.codes:
            await self._reengage(number.institution, update, now, first=not result.duplicate)

    async def _reengage(
        self, institution: str, update: StatusUpdate, now: float, *, first: bool
    ) -> None:
        """Meta failed the message after accepting it because the contact's 24-hour
        window was closed: the outbox sends its template instead (once, however often
        Meta repeats the status), as it does when the send itself is answered 131047.
        Asked on every repeat, not only the first: a process that died between the
        receipt and this step is made good by the body's retry."""
        assert update.key is not None
        resend = await self.store.resend_as_template(
            institution_id=institution,
            conversation_id=update.conversation_id,
            idempotency_key=update.key[:200],
            code=REENGAGEMENT_CODE,
            error=update.error,
            now=now,
            first=first,
        )
        said = {
            "executionId": resend.execution_id,
            "institutionId": institution,
            "conversationId": update.conversation_id,
            "idempotencyKey": update.key[:200],
            "code": REENGAGEMENT_CODE,
        }
        if resend.outcome == "in_flight":  # its send has not been recorded yet
            raise Later(f"message {update.key[:200]} is out with a dispatcher")
        if resend.outcome == "resent":
            log.warning("message.resent_as_template", **said)
            state_of(self.app).wake()  # this process's dispatchers send it now
        elif resend.outcome == "no_template" and first:
            log.warning("message.outside_window", **said, reason="no template to send instead")


def _contact(update: MessageUpdate) -> dict[str, Any] | None:
    """What a flow started by the message knows of the contact: ``contact.name`` (the
    WhatsApp profile's, when it is text the store can keep) and ``contact.waId``."""
    known: dict[str, Any] = {"waId": update.wa_id}
    name = update.payload.get("profileName")
    if isinstance(name, str) and name.strip():
        with contextlib.suppress(ValueError):  # one the store cannot keep: left out
            known["name"] = storable(name.strip()[:MAX_PROFILE_NAME])
    return known


def _ignored(update: Ignored) -> str | None:
    """Log what becomes nothing, at the level it is worth; a note when it was malformed."""
    said: dict[str, Any] = {"what": update.what, **update.details}
    if update.phone_number_id is not None:
        said["phoneNumberId"] = update.phone_number_id
    {"debug": log.debug, "info": log.info, "warning": log.warning}[update.level](
        "whatsapp.ignored", **said
    )
    return f"ignored {update.what}" if update.what == "malformed" else None


#: a claimed body with what it says: its updates, or why it cannot be read
Body = tuple[ChannelWebhook, list[Update] | Exception]


def read_body(hook: ChannelWebhook) -> list[Update] | Exception:
    """The body's updates, or the error that makes it unreadable (JSON, Unicode, nesting
    depth, the bounds): read once per claim, for its chain and for its processing."""
    try:
        return parse_webhook(json.loads(hook.body))
    except (ValueError, RecursionError) as exc:
        return exc


def chains(bodies: list[Body]) -> list[list[Body]]:
    """``bodies`` (in the order stored) split into chains that share no conversation:
    bodies naming a conversation in common stay in one chain, in order; a body that
    cannot be read is a chain of its own (its processing fails it)."""
    groups: list[tuple[set[str], list[Body]]] = []
    for body in bodies:
        read = body[1]
        keys = set() if isinstance(read, Exception) else set(conversation_keys(read))
        joined = [g for g in groups if g[0] & keys]
        merged_keys, merged = set(keys), []
        for group in joined:
            merged_keys |= group[0]
            merged.extend(group[1])
            groups.remove(group)
        merged.append(body)
        merged.sort(key=lambda b: b[0].id)
        groups.append((merged_keys, merged))
    return [chain for _, chain in groups]
