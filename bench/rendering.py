"""What saying something costs: messages rendered per second, plain and rich.

    python bench/rendering.py [--seconds 2]

Each case renders one node's message through the path every step takes
(:func:`trilha.processors.saying.say`: templates, the contact's language, a list's
rows built from a variable, degradation to what the channel shows) against the
same variables, in this one process, for ``--seconds``; it prints messages per
second and microseconds per message. A step of the engine commits to the store
(about 100-400 µs on SQLite ``FULL`` here), so rendering is worth watching when
it nears that. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from trilha.config import Config
from trilha.core.content import CAPABILITIES
from trilha.core.execution import iso
from trilha.core.flow import MessageNode, load_flow
from trilha.processors.base import StepContext
from trilha.processors.saying import say

SLOTS = [
    {"id": f"s{i}", "label": f"seg 10/06 às {8 + i}:00", "doctor": "Dra. Ana", "at": i}
    for i in range(12)
]

CASES: dict[str, dict[str, Any]] = {
    "plain text": {"text": "Olá, {{contact.name}}! Seu protocolo é {{protocol}}."},
    "two languages": {
        "text": {"pt-BR": "Olá, {{contact.name}}!", "en": "Hello, {{contact.name}}!"},
    },
    "each loop (12 items)": {
        "text": "Horários:\n{{#each slots}}{{@number}}. {{this.label}}"
        " ({{this.doctor}})\n{{/each}}",
    },
    "expressions": {
        "text": "{{ upper(contact.name) }}: {{ slots[choice - 1].label }},"
        " {{ len(slots) }} ao todo",
    },
    "3 buttons": {
        "text": "Como posso ajudar, {{contact.name}}?",
        "header": "Clínica Sorriso",
        "buttons": [
            {"id": "agendar", "title": "Agendar"},
            {"id": "onde", "title": "Onde fica"},
            {"id": "humano", "title": "Atendente"},
        ],
    },
    "list from rowsFrom (12 -> 10 rows)": {
        "text": "Escolha um horário",
        "list": {
            "button": "Ver horários",
            "sections": [
                {
                    "title": "Junho",
                    "rowsFrom": {
                        "items": "slots",
                        "id": "{{this.id}}",
                        "title": "{{this.label}}",
                        "description": "{{this.doctor}}",
                    },
                }
            ],
        },
    },
    "location": {
        "location": {
            "latitude": -23.5614,
            "longitude": -46.6559,
            "name": "Clínica Sorriso",
            "address": "Av. Paulista, 1000",
        }
    },
}


def context(node: MessageNode, renders: frozenset[str]) -> StepContext:
    flow = load_flow({"id": "bench", "start": node.id, "nodes": [node.model_dump(by_alias=True)]})
    now = time.time()
    variables = {
        "contact": {"name": "Maria", "language": "pt-BR"},
        "protocol": "A-1234",
        "choice": 2,
        "slots": SLOTS,
        "sys": {"now": iso(now), "language": "pt-BR"},
    }
    return StepContext(
        execution_id="e",
        institution_id="i",
        conversation_id="c",
        contact_id="k",
        flow=flow,
        variables=variables,
        node_state={},
        now=now,
        config=Config(),
        renders=renders,
    )


def measure(node: MessageNode, renders: frozenset[str], seconds: float) -> tuple[int, float]:
    ctx = context(node, renders)
    say(ctx, node.text, node, "the message")  # warm the template cache
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            say(ctx, node.text, node, "the message")
        done += 100
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and channel")
    args = parser.parse_args()
    print(f"{'case':36} {'channel':10} {'msgs/s':>10} {'µs/msg':>8}")
    for name, fields in CASES.items():
        node = MessageNode.model_validate({"id": "m", "type": "message", **fields})
        for channel, renders in (("rich", CAPABILITIES), ("text only", frozenset())):
            done, took = measure(node, renders, args.seconds)
            print(f"{name:36} {channel:10} {done / took:10,.0f} {took / done * 1e6:8.1f}")


if __name__ == "__main__":
    main()
