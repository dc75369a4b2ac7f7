"""The small flows the stateful test publishes, two variants of some so versions pile up.

Between them they use every node type but ``http``: message, question (validated,
re-asked, with and without ``onInvalid``/``onTimeout``), condition, set, delay,
jump (to the latest version, to a node that may be missing, to a flow that is
never published), handoff and end. Input timeouts are short (30 s) so the fake
clock passes them often.
"""

from __future__ import annotations

from typing import Any

SETTINGS = {"inputTimeoutSeconds": 30, "timeoutMessage": "No reply in time, bye."}


def _survey(variant: str, *, delay: float, max_invalid: int, on_invalid: bool) -> dict[str, Any]:
    ask_code: dict[str, Any] = {
        "id": "ask_code",
        "type": "question",
        "text": f"Your code? ({variant})",
        "variable": "code",
        "validate": {"kind": "regex", "pattern": "^ok-[0-9]+$"},
        "invalidText": "That is not a code, again?",
        "maxInvalid": max_invalid,
        "next": "route",
    }
    if on_invalid:
        ask_code["onInvalid"] = "desk"
    return {
        "id": "survey",
        "start": "hello",
        "settings": SETTINGS,
        "nodes": [
            {"id": "hello", "type": "message", "text": f"Hi! ({variant})", "next": "ask_code"},
            ask_code,
            {
                "id": "route",
                "type": "condition",
                "branches": [{"when": "vip == true", "next": "desk"}],
                "default": "pause",
            },
            {"id": "pause", "type": "delay", "seconds": delay, "next": "ask_more"},
            {
                "id": "ask_more",
                "type": "question",
                "text": "Anything else?",
                "variable": "more",
                "onTimeout": "so_long",
                "next": "mark",
            },
            {
                "id": "mark",
                "type": "set",
                "variables": {"done": True, "last": "{{code}}"},
                "next": "onward",
            },
            {"id": "onward", "type": "jump", "flowId": "followup"},
            {"id": "desk", "type": "handoff", "queue": "desk", "text": "A person will help."},
            {"id": "so_long", "type": "end", "text": "So long."},
        ],
    }


def _followup(variant: str, *, on_missing: bool) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "id": "followup",
        "start": "thanks",
        "settings": SETTINGS,
        "nodes": [
            {
                "id": "thanks",
                "type": "message",
                "text": f"Thanks {{{{code}}}} ({variant})",
                "next": "rate",
            },
            {
                "id": "rate",
                "type": "question",
                "text": "Rate us from 1 to 5.",
                "variable": "rating",
                "validate": {"kind": "number", "min": 1, "max": 5},
                "maxInvalid": 1,
                "next": "bye",
            },
            {"id": "bye", "type": "end", "text": "Bye!"},
        ],
    }
    if on_missing:
        flow["onMissingNode"] = "thanks"
    return flow


VARIANTS: dict[str, dict[str, Any]] = {
    "survey-a": _survey("A", delay=20, max_invalid=1, on_invalid=True),
    "survey-b": _survey("B", delay=45, max_invalid=2, on_invalid=False),
    "followup-a": _followup("A", on_missing=True),
    "followup-b": _followup("B", on_missing=False),
    # jumps into followup at a node it does not have: onMissingNode, or failure
    "detour": {
        "id": "detour",
        "start": "note",
        "nodes": [
            {"id": "note", "type": "message", "text": "A detour.", "next": "hop"},
            {"id": "hop", "type": "jump", "flowId": "followup", "nodeId": "gone"},
        ],
    },
    # jumps to a flow that is never published: the execution fails with a notice
    "ghost": {
        "id": "ghost",
        "start": "hop",
        "nodes": [{"id": "hop", "type": "jump", "flowId": "nowhere"}],
    },
    # counts to the start variable ``limit``; beyond 4 rounds it hits maxStepsPerTurn (12)
    "loop": {
        "id": "loop",
        "start": "inc",
        "nodes": [
            {"id": "inc", "type": "set", "expressions": {"n": "n + 1"}, "next": "check"},
            {
                "id": "check",
                "type": "condition",
                "branches": [{"when": "n >= limit", "next": "done"}],
                "default": "tick",
            },
            {"id": "tick", "type": "message", "text": "tick {{n}}", "next": "inc"},
            {"id": "done", "type": "end", "text": "Counted to {{n}}."},
        ],
    },
}

#: flow ids a start may name, the survey (the longest) more often; "nowhere" is never
#: published (FlowNotFound)
FLOW_IDS = ("survey", "survey", "survey", "followup", "detour", "ghost", "loop", "nowhere")
