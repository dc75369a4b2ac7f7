"""The simulated contact: a valid answer to any question, after a while.

Any flow may be run by ``trilha chaos``, so the answer is read off the
question's own rule (a choice's first option, a number in its range, an
e-mail...), checked with the engine's own validator; how long the contact takes
to answer is fixed by the seed.
"""

from __future__ import annotations

from trilha.core.answers import Refused, check_answer
from trilha.core.faults import chance
from trilha.core.flow import AnswerRule, QuestionNode

#: the longest a simulated contact takes to answer, in seconds
THINK_SECONDS = (1.0, 20.0)


def _candidates(rule: AnswerRule) -> list[str]:
    kind = rule.kind
    if kind == "choice":
        return [o.value for o in rule.choice_options()][:1]
    if kind == "number":
        low = 1.0 if rule.min is None else rule.min
        high = low if rule.max is None else rule.max
        middle = int((low + high) // 2)
        return [str(middle), str(int(low)), f"{low:g}"]
    if kind == "email":
        return ["ana.souza@example.com"]
    if kind == "phone":
        return ["+55 11 98765-4321", "11987654321"]
    if kind == "regex":
        # what such patterns usually ask for: a CPF, digits, a code, a yes
        return ["123.456.789-09", "12345678909", "12345", "ABC123", "sim", "Ana Souza"]
    text = "Ana Souza"
    if rule.min_length is not None and len(text) < rule.min_length:
        text = text + " x" * rule.min_length
    if rule.max_length is not None:
        text = text[: rule.max_length]
    return [text, "sim", "1", "ok"]


def answer(question: QuestionNode) -> str:
    """A reply the question accepts (its first candidate when none does: the flow's
    invalid-answer path then runs, which is a path like any other)."""
    candidates = _candidates(question.validate_)
    for text in candidates:
        if not isinstance(check_answer(question.validate_, text), Refused):
            return text
    return candidates[0]


def think_seconds(seed: int, execution_id: str, node_id: str, turn: int) -> float:
    low, high = THINK_SECONDS
    return low + (high - low) * chance(seed, "think", execution_id, node_id, turn)
