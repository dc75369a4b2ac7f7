"""Meta's WhatsApp Cloud API as trilha's channel: each outbound message is one
``POST /{phone_number_id}/messages`` from the number the conversation is on.

Which number sends: a WhatsApp conversation's id is ``wa:{phone_number_id}:{wa_id}``,
and that number must be one configured for the message's institution; a conversation
naming another institution's number (or one not configured) is refused permanently and
nothing is sent. A conversation id in any other form (started through the API) is sent
from the institution's number when it has exactly one, to the ``contact_id`` as wa_id.

Around the send: the number's ``messages_per_second`` (:mod:`.throttle`), and a moment
with nothing sent from a number Meta said is over its throughput (``130429``); with
``mark_read``, the contact's message being answered (``reply_to``) marked read first,
once per wamid, a failure there never failing the message; and when Meta answers
``131047`` (the contact's 24-hour window is closed) the message's ``template``
alternative sent instead, or an ``outside_window`` failure when it has none.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Final

from trilha.channels.whatsapp.graph import GraphApi, GraphError
from trilha.channels.whatsapp.outbound import (
    Unsendable,
    envelope,
    request_body,
    template_alternative,
    template_message,
)
from trilha.channels.whatsapp.throttle import HOLD_SECONDS, NumberThrottle
from trilha.config import WhatsAppConfig, WhatsAppNumber
from trilha.core.content import CAPABILITIES
from trilha.core.execution import OutboundMessage
from trilha.observability.logging import get_logger

log = get_logger("trilha.whatsapp")

#: a WhatsApp conversation's id: the business number's id, then the contact's wa_id
CONVERSATION: Final = re.compile(r"^wa:([0-9]{1,32}):([^:\s]{1,64})$")
#: what Meta takes as ``to``: a wa_id, or a phone number with its country code
WA_ID: Final = re.compile(r"^\+?[0-9A-Za-z._-]{1,64}$")
#: the wamids remembered as marked read (the oldest are forgotten first)
MAX_READ: Final = 10_000
#: Meta's codes saying the number itself is over its throughput (not one contact's pair
#: limit): the number is held back for a moment
NUMBER_THROTTLED: Final = frozenset({130429})


def conversation_id(phone_number_id: str, wa_id: str) -> str:
    """The id of the conversation between a business number and a contact."""
    return f"wa:{phone_number_id}:{wa_id}"


def _refused(message: OutboundMessage, why: str) -> GraphError:
    """A message that must not be sent; the error names no contact (it lands in the
    trail and the outbox's ``lastError``)."""
    return GraphError(f"not sent for institution {message.institution_id}: {why}", kind="permanent")


#: WhatsApp's customer-service window, from the contact's last message
SERVICE_WINDOW_SECONDS: Final = 24 * 3600.0


def start_problem(
    config: WhatsAppConfig, institution_id: str, conversation_id: str, contact_id: str
) -> str | None:
    """Why an execution may not start in ``conversation_id`` on WhatsApp (``None``: it
    may). Its conversation must be the one the contact's replies arrive in,
    ``wa:{phone_number_id}:{wa_id}`` with a number of the institution's and the contact
    id its ``wa_id``: another id would send from the number, yet the replies, the
    24-hour window and Meta's statuses would all belong to that other conversation."""
    match = CONVERSATION.match(conversation_id)
    if match is None:
        return (
            "with the WhatsApp channel a conversation is 'wa:{phone_number_id}:{wa_id}',"
            " where the contact's replies arrive"
        )
    number = config.number(match.group(1))
    if number is None or number.institution != institution_id:
        return f"{match.group(1)} is not one of the institution's WhatsApp numbers"
    if match.group(2) != contact_id:
        return f"the contactId must be the conversation's wa_id ({match.group(2)})"
    return None


class WhatsAppChannel:
    """Sends each message from its conversation's business number (see the module)."""

    name = "whatsapp"
    renders = CAPABILITIES
    #: Meta's customer-service window: a contact who has not written for 24 hours may
    #: only be sent a template (the engine picks it, or the node's fallback)
    window_seconds: float | None = SERVICE_WINDOW_SECONDS

    def __init__(
        self,
        config: WhatsAppConfig,
        graph: GraphApi,
        *,
        throttle: NumberThrottle | None = None,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self.config = config
        #: how long a number sends nothing after Meta's ``130429``
        self.hold_seconds = hold_seconds
        #: shared with the inbound side (media lookups) when it is built from this channel
        self.graph = graph
        self.throttle = throttle or NumberThrottle(config.messages_per_second)
        self._read: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._numbers = {n.phone_number_id: n for n in config.numbers}
        self._by_institution: dict[str, list[WhatsAppNumber]] = {}
        for n in config.numbers:
            self._by_institution.setdefault(n.institution, []).append(n)

    @classmethod
    def from_config(cls, config: WhatsAppConfig) -> WhatsAppChannel:
        """The channel ``[channel.whatsapp]`` describes, its ``${NAME}`` secrets read
        from the environment (a missing one is a :class:`~trilha.errors.ConfigError`)."""
        graph = GraphApi.from_config(config)
        return cls(config, graph)

    def route(self, message: OutboundMessage) -> tuple[WhatsAppNumber, str]:
        """The number that sends ``message`` and the wa_id it goes to; a permanent
        :class:`GraphError` when the conversation is not one the institution may send on."""
        match = CONVERSATION.match(message.conversation_id)
        if match is not None:
            number = self._numbers.get(match.group(1))
            if number is None:
                raise _refused(
                    message, f"the conversation's number {match.group(1)} is not configured"
                )
            if number.institution != message.institution_id:
                raise _refused(
                    message,
                    f"the conversation's number {number.phone_number_id} is not the institution's",
                )
            to = match.group(2)
        else:
            mine = self._by_institution.get(message.institution_id, [])
            if len(mine) != 1:
                have = "no WhatsApp number" if not mine else f"{len(mine)} WhatsApp numbers"
                raise _refused(
                    message,
                    f"the institution has {have}; a conversation id of the form"
                    " 'wa:{phone_number_id}:{wa_id}' names the one to send from",
                )
            number, to = mine[0], message.contact_id
        if not WA_ID.match(to):
            raise _refused(message, "the contact id is not a WhatsApp id")
        return number, to

    async def deliver(self, message: OutboundMessage) -> None:
        number, to = self.route(message)
        pnid = number.phone_number_id
        try:
            body = request_body(
                to, message.text, message.content, callback_data=message.idempotency_key
            )
        except Unsendable as exc:
            raise _refused(message, str(exc)) from exc
        await self.throttle.acquire(pnid)
        if self.config.mark_read and message.reply_to:
            await self._mark_read(pnid, message.reply_to)
        try:
            await self.graph.send(pnid, body)
        except GraphError as exc:
            if exc.meta_code in NUMBER_THROTTLED:
                self.throttle.hold(pnid, self.hold_seconds)
            if exc.kind != "outside_window":
                raise
            await self._send_template(message, pnid, to, exc)

    async def _send_template(
        self, message: OutboundMessage, pnid: str, to: str, refusal: GraphError
    ) -> None:
        """Meta refused the message outside the contact's 24-hour window: send its
        template instead, or fail it as ``outside_window``."""
        template = template_alternative(message.content)
        if template is None:
            raise GraphError(
                f"{refusal}; the message has no template to send outside the 24-hour window",
                **refusal.details,
            ) from refusal
        try:
            body = envelope(to, template_message(template), callback_data=message.idempotency_key)
        except Unsendable as exc:
            raise GraphError(
                f"{refusal}; its template cannot be sent: {exc}", **refusal.details
            ) from exc
        # a second send from the number takes its own slot, waited for whenever it comes
        # (never long: no slot is given out further ahead than max_wait)
        await self.throttle.acquire(pnid, patient=True)
        await self.graph.send(pnid, body)

    async def _mark_read(self, pnid: str, wamid: str) -> None:
        """Mark the contact's message read, once: a failure is logged, never raised
        (the answer matters more than the blue ticks)."""
        key = (pnid, wamid)
        if key in self._read:
            return
        try:
            await self.graph.mark_read(pnid, wamid)
        except GraphError as exc:
            log.warning(
                "whatsapp.mark_read_failed",
                phoneNumberId=pnid,
                messageId=wamid[:200],
                error=str(exc),
                kind=exc.kind,
            )
            if exc.kind == "transient":
                return  # a later answer to it tries again
        self._read[key] = None
        while len(self._read) > MAX_READ:
            self._read.popitem(last=False)

    async def aclose(self) -> None:
        await self.graph.aclose()
