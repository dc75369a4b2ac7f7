"""What both backends share to erase a contact's data (LGPD's right to be forgotten) and
to apply retention: the kinds counted, what an erasure returns, and the rules of what
is deleted and what is redacted, so SQLite and PostgreSQL cannot drift apart.

Where a contact's data lives, table by table, and how the erasure finds it (``E``: the
executions erased; for a contact, every execution of the institution with its contact
id; ``C``: their conversations):

==========================  ===================================================  =========
table                       found by                                             done
==========================  ===================================================  =========
executions                  ``id`` in E (variables, state, call stack, meta)     deleted
checkpoints                 ``execution_id`` in E (state, input, output)         deleted
transitions                 ``execution_id`` in E (reasons may quote the data)   deleted
execution_logs (the trail)  ``execution_id`` in E                                deleted
inbox                       ``execution_id`` in E, or the contact's id           deleted
outbox                      ``execution_id`` in E, or the contact's id           deleted
delivery_receipts           their outbox message's                               deleted
handoffs                    ``execution_id`` in E, or the contact's id           deleted
desk_messages               ``execution_id`` in E, or their inbox message's      deleted
signals                     ``execution_id`` in E (payloads)                     deleted
quarantine                  ``execution_id`` in E (the rejected row)             deleted
step_errors                 ``execution_id`` in E                                redacted
idempotency                 a stored answer naming the contact, an execution     deleted
                            of E or a conversation of C (the institution's own)
channel_webhooks (+ keys)   a processed body of a conversation of C (by the      deleted
                            keys kept with it: its bytes would also name the
                            number in other institutions' conversations)
bulk_jobs                   the institution's jobs whose filter or reason names  redacted
                            the contact or a conversation of C (the name is
                            replaced by ``[erased]``, so the job matches nothing
                            of it)
turns                       nothing personal (durations by flow): kept           kept
==========================  ===================================================  =========

``step_errors`` rows stay so that ``GET /v1/errors`` keeps its counts: their message and
the failing input (an http step's request) are overwritten with NULL. Flows, calendars,
triggers, API keys, alerts and workers hold no contact's data.

A webhook body still pending (not processed yet) is left alone: it is a message that
arrived during the erasure, processed after it as a new message (the contact spoke
again). Processed bodies of the contact's conversations are deleted whole: a body may
name other contacts too, whose messages are already in the inbox by then. A body whose
messages reached no execution (no trigger took them) is not found this way: such
bodies go with `purge_channel_webhooks`, as every processed body does in time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

#: every kind an erasure counts, in the receipt's order
KINDS: Final = (
    "executions",
    "variables",
    "checkpoints",
    "transitions",
    "transcripts",
    "inbox",
    "outbox",
    "deliveryReceipts",
    "trail",
    "handoffs",
    "notifications",
    "signals",
    "quarantine",
    "stepErrors",
    "idempotency",
    "webhooks",
    "bulkJobs",
    "logFileLines",
)

#: what an erased name becomes where a row must stay (a bulk job's filter)
ERASED: Final = "[erased]"


def redacted_job(
    filter_text: str, selection_text: str, reason: str | None, names: Sequence[str]
) -> tuple[str, str, str | None] | None:
    """A bulk job's filter (wire JSON), store filter (JSON) and reason with each of
    ``names`` (the contact's id, their conversations') made ``[erased]``: in the filters
    only where a contact or conversation field equals one, in the reason only as a whole
    word (contact ``1`` leaves ``retry 10 nodes`` alone); ``None`` when nothing names
    them. Parsed, never replaced as text: a short id would otherwise rewrite numbers,
    keys and other people's words."""
    wanted = {n for n in names if n}
    if not wanted:
        return None
    changed = False
    documents: list[str] = []
    for text, fields in (
        (filter_text, ("contactId", "conversationId")),
        (selection_text, ("contact_id", "conversation_id")),
    ):
        document = json.loads(text)
        for name in fields:
            if isinstance(document, dict) and document.get(name) in wanted:
                document[name] = ERASED
                changed = True
        documents.append(json.dumps(document, separators=(",", ":")))
    if reason:
        words = re.compile(
            r"(?<![\w.:-])(?:" + "|".join(map(re.escape, sorted(wanted))) + r")(?![\w.:-])"
        )
        reason, count = words.subn(ERASED, reason)
        changed = changed or count > 0
    return (documents[0], documents[1], reason) if changed else None


Kind = Literal["contact", "retention"]

#: the most execution ids one ``forget_executions`` call takes (a retention batch)
MAX_EXECUTIONS: Final = 1_000


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure removed from the store: counts per kind (:data:`KINDS`), and the
    executions and conversations it erased (what a log file is cleaned of)."""

    removed: dict[str, int]
    execution_ids: tuple[str, ...] = ()
    conversation_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """The audit of one erasure, as the ``erasures`` table keeps it (naming no one)."""

    id: str
    institution_id: str
    kind: str
    actor: str
    at: float
    removed: dict[str, int] = field(default_factory=dict)


def zeros() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


def needles(
    contact_id: str | None, execution_ids: Iterable[str], conversation_ids: Iterable[str]
) -> list[str]:
    """The texts whose presence makes a stored API answer (an idempotency record) the
    contact's: an execution's id quoted (random, so it never matches by chance), and the
    contact's and conversations' ids only as the value of their own field
    (``"contactId":"1"``: a short id quoted alone would match any answer with that string
    in it, and erase another contact's record). Each also as it reads inside a JSON
    string (the API keeps an answer's body as the JSON text it sent: ``\\"id\\"``)."""
    quoted = {json.dumps(v, ensure_ascii=False) for v in execution_ids if v}
    named = [("contactId", contact_id), *(("conversationId", c) for c in conversation_ids)]
    for name, value in named:
        if value:
            text = json.dumps(value, ensure_ascii=False)
            quoted |= {f'"{name}":{text}', f'"{name}": {text}'}
    return sorted(quoted | {json.dumps(q, ensure_ascii=False)[1:-1] for q in quoted})


def tenant_of(scope: str) -> tuple[str, str | None]:
    """The institutions in an idempotency scope (``"acme POST /v1/..."`` or, for an admin
    key acting for another, ``"ops>acme POST ..."``): (the key's, the one acted for)."""
    tenant = scope.split(" ", 1)[0]
    mine, _, other = tenant.partition(">")
    return mine, other or None


def scoped_to(scope: str, institution_id: str) -> bool:
    """Whether an idempotency record was made acting for ``institution_id``."""
    mine, other = tenant_of(scope)
    return (other or mine) == institution_id


def webhook_keys(conversation_ids: Iterable[str]) -> list[str]:
    """The channel-webhook keys (``phone_number_id:wa_id``) of WhatsApp conversations
    (``wa:phone_number_id:wa_id``) among ``conversation_ids``."""
    return sorted({c[3:] for c in conversation_ids if c.startswith("wa:")})


def checked_ids(execution_ids: Sequence[str]) -> list[str]:
    if len(execution_ids) > MAX_EXECUTIONS:
        raise ValueError(
            f"at most {MAX_EXECUTIONS} executions per erasure, not {len(execution_ids)}"
        )
    return sorted(set(execution_ids))


def removed_json(removed: Mapping[str, int]) -> str:
    return json.dumps({k: int(removed.get(k, 0)) for k in KINDS}, separators=(",", ":"))


def removed_of(text: str) -> dict[str, int]:
    data = json.loads(text)
    return {k: int(data.get(k, 0)) for k in KINDS}
