"""A bulk job naming an erased contact keeps its row with the name redacted: the filters
only where a contact or conversation field equals the name, the reason only as a whole
word. A short contact id ("1", "a") touches nothing else: not the numbers, keys or
booleans of the stored filters, not other people's words."""

from __future__ import annotations

import dataclasses
import json

from trilha.store.base import ExecutionFilter, StepErrorMatch
from trilha.store.bulk import selection_json, selection_of
from trilha.store.erasure import ERASED, redacted_job

SELECTION = ExecutionFilter(
    institution_id="acme",
    status="waiting_input",
    stuck_before=1765000001.5,
    with_errors=False,
    failed_step=StepErrorMatch(since=1.0, node_id="a", status=503),
)


def test_only_the_fields_naming_the_contact_are_redacted() -> None:
    where = dataclasses.replace(SELECTION, contact_id="1", conversation_id="wa:9:1")
    filter_text = json.dumps({"contactId": "1", "conversationId": "wa:9:1", "status": "a"})
    redacted = redacted_job(filter_text, selection_json(where), "asked by 1, retry 10", ["1"])
    assert redacted is not None
    filter_after, selection_after, reason = redacted
    assert json.loads(filter_after) == {
        "contactId": ERASED,
        "conversationId": "wa:9:1",  # not this name: the conversation's own is given apart
        "status": "a",
    }
    after = selection_of(selection_after)  # still a filter the job can resume with
    assert after == dataclasses.replace(where, contact_id=ERASED)
    assert reason == f"asked by {ERASED}, retry 10"


def test_a_job_that_does_not_name_them_is_left_as_it_was() -> None:
    for name in ("1", "a", "false", "acme", "status"):
        text = selection_json(SELECTION)
        assert redacted_job('{"status": "waiting_input"}', text, "retry 1a node", [name]) is None
    assert redacted_job("{}", selection_json(SELECTION), None, []) is None
