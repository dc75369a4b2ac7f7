"""The flows issue 14's review published as an attacker holding one institution's key,
and the lookup flow its dependency findings turned on.

Shared by the tests that reproduce the findings (integration and through a real
``trilha serve``) and ``bench/neighbours.py``, so that the attacks the tests refuse
and the neighbour the bench measures are the same flows.
"""

from __future__ import annotations

from typing import Any

Definition = dict[str, Any]

#: finding 4: Python's engine took 41 s to refuse a 31-character reply to this pattern
REGEX = {
    "id": "regex",
    "start": "q",
    "nodes": [
        {
            "id": "q",
            "type": "question",
            "text": "code?",
            "variable": "code",
            "validate": {"kind": "regex", "pattern": "(a+)+$"},
            "invalidText": "no",
            "maxInvalid": 100,
            "next": "end",
        },
        {"id": "end", "type": "end"},
    ],
}

#: findings 5 and 6: lists of lists sharing one large string (4.9 GB, 101 s of stall),
#: then a chain of ``x * x`` (10 s, then an internal error); each node falls back. The
#: names sort in the order of evaluation, as a stored flow's keys do.
VALUES = {
    "id": "values",
    "start": "make",
    "nodes": [
        {
            "id": "make",
            "type": "set",
            "expressions": {
                "a_s": "'" + "x" * 1_500 + "'",
                "b_rows": "[" + ", ".join(["a_s"] * 40) + "]",
                "c_table": "[" + ", ".join(["b_rows"] * 40) + "]",
            },
            "fallback": {"next": "square"},
            "next": "square",
        },
        {
            "id": "square",
            "type": "set",
            "expressions": {"x": " * ".join(["x"] * 40)},
            "fallback": {"next": "end"},
            "next": "end",
        },
        {"id": "end", "type": "end", "text": "done"},
    ],
}

#: finding 10: a loop through a positive delay never ended (20,000 steps in 20 s)
LOOP = {
    "id": "loop",
    "start": "wait",
    "nodes": [
        {"id": "wait", "type": "delay", "seconds": 0.001, "next": "again"},
        {"id": "again", "type": "set", "variables": {"n": 1}, "next": "wait"},
    ],
}


def lookup(called: str = "called") -> Definition:
    """Finding 2: a flow calling the ``crm`` dependency (``GET /me`` into ``me``), saying
    ``called`` when the call went out and ``refused`` when it did not."""
    return {
        "id": "lookup",
        "start": "call",
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "crm",
                "url": "/me",
                "saveAs": "me",
                "fallback": {"next": "no"},
                "next": "yes",
            },
            {"id": "yes", "type": "end", "text": called},
            {"id": "no", "type": "end", "text": "refused"},
        ],
    }
