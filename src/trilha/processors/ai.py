"""``ai``: classify the contact's text into one of the node's intents.

The NLP service is a declared dependency (``dependency``) that receives::

    POST {url}   {"text": "quero a segunda via do boleto", "intents": ["billing", "support"]}

and answers ``{"intent": "billing", "confidence": 0.93}`` (``intent`` may be
``null``). An answer naming an intent the node does not declare, or below
``minConfidence``, is no match; the intents' keywords then get their say.

When the service cannot answer (its breaker is open, a timeout, a connection
error, an error status, an answer of the wrong shape or larger than ``[http]
max_response_bytes``) the node classifies with the keywords alone and the step
is ``degraded``: the conversation goes on with reduced function instead of
failing. With ``waitForDependency`` an open breaker makes the execution wait for
the service instead (the engine parks it and re-runs the node), and the keywords
are used once the wait is spent.

The ``POST`` changes nothing at the service (it classifies a text), so it is safe
to repeat: unlike an ``http`` node's, it carries no idempotency key, a lost answer
is not *ambiguous*, and a worker taking over an execution interrupted during the
call simply asks again (see :mod:`trilha.processors.http`).

Keywords match case- and accent-insensitively, as whole words or phrases
(``"segunda via"``); a trailing ``*`` matches any ending (``"cancel*"``
matches "cancelar" and "cancelamento"). The intent with the most matching
keywords wins; a tie goes to the one declared first.

The variable ``saveAs`` (default ``intent``) receives
``{"intent": name | null, "source": "nlp" | "keywords", "confidence": float | null}``.
The node routes to the matched intent's ``next``, else the node's ``next``;
with no match, to ``default``, else ``next``.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from trilha.core.answers import fold
from trilha.core.flow import AiNode
from trilha.core.templates import render
from trilha.errors import DependencyUnavailable, LimitExceeded, NodeError
from trilha.processors.base import StepContext, StepResult
from trilha.resilience.dependencies import WAIT_STARTED_KEY, DependencyClient, node_target

_WORD = re.compile(r"\w+")


class AiProcessor(DependencyClient):
    node_type: ClassVar[str] = "ai"
    node_model: ClassVar[type[AiNode]] = AiNode
    effectful: ClassVar[bool] = True

    async def run(self, node: AiNode, ctx: StepContext) -> StepResult:
        text = render(node.text, ctx.variables, ctx.budget("the text to classify"))
        intent: str | None = None
        confidence: float | None = None
        source = "keywords"
        problem: str | None = None
        if node.dependency is not None:
            try:
                intent, confidence = await self._ask(node, ctx, text)
                source = "nlp"
            except DependencyUnavailable:
                if _still_waiting(node, ctx):
                    raise
                problem = f"dependency '{node.dependency}' is unavailable (circuit open)"
            except (NodeError, LimitExceeded) as exc:  # an answer too large: wrong shape
                if exc.details.get("kind") in ("configuration", "forbidden"):
                    raise  # a deployment mistake, not the service being down
                problem = str(exc)
        if intent is None:
            keyword_intent = match_keywords(node, text)
            if keyword_intent is not None or source == "keywords":
                intent, confidence, source = keyword_intent, None, "keywords"
        chosen = next((i for i in node.intents if i.name == intent), None)
        target = (chosen.next if chosen else node.default) or node.next
        saved = {"intent": intent, "source": source, "confidence": confidence}
        output: dict[str, Any] = dict(saved)
        if problem is not None:
            output["degraded"] = problem
        return StepResult(
            next_node=target,
            variables={node.save_as: saved},
            output=output,
            degraded=problem is not None,
        )

    async def _ask(self, node: AiNode, ctx: StepContext, text: str) -> tuple[str | None, float]:
        """The service's confident answer among the node's intents, else ``(None, c)``."""
        target = node_target(node, ctx)
        names = [i.name for i in node.intents]
        reply = await self.send(target, "POST", json={"text": text, "intents": names})
        try:
            data = reply.json()
        except ValueError:
            data = None
        intent = data.get("intent") if isinstance(data, dict) else None
        confidence = data.get("confidence") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or not (intent is None or isinstance(intent, str))
            or isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not (math.isfinite(confidence) and 0 <= confidence <= 1)
        ):
            raise NodeError(
                f"POST {target.url}: expected {{intent, confidence}}, got {reply.text[:200]!r}",
                kind="validation",
            )
        if intent not in names or confidence < node.min_confidence:
            return None, float(confidence)
        return intent, float(confidence)


def _still_waiting(node: AiNode, ctx: StepContext) -> bool:
    """Whether the node should wait for its dependency rather than use the keywords."""
    if node.wait_for_dependency is None:
        return False
    started = ctx.node_state.get(WAIT_STARTED_KEY)
    if not isinstance(started, int | float):
        return True
    return ctx.now - started < node.wait_for_dependency.max_wait_seconds


def match_keywords(node: AiNode, text: str) -> str | None:
    """The intent whose keywords ``text`` matches most (first declared on a tie)."""
    words = " ".join(_WORD.findall(fold(text)))
    best: tuple[int, str | None] = (0, None)
    for intent in node.intents:
        hits = sum(1 for k in intent.keywords if _keyword_pattern(k).search(words))
        if hits > best[0]:
            best = (hits, intent.name)
    return best[1]


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    phrase = re.escape(" ".join(_WORD.findall(fold(keyword))))
    ending = r"\w*" if keyword.rstrip().endswith("*") else ""
    return re.compile(rf"(?<!\w){phrase}{ending}(?!\w)")
