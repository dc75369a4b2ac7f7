"""Rounds of retries: how the engine reads the seed's "retry with exponential backoff
(max 3 attempts)" for a node calling a declared dependency (issue 17).

A round is a node's retry policy run once: ``max_attempts`` attempts with exponential
backoff and jitter. When a round ends (its last attempt failed) on a failure that says
the dependency is in trouble (what its breaker counts: by default a timeout, a connection
error, ``429``, ``502``, ``503``, ``504``), the execution stays ``recovering`` for a
longer pause and the next round begins, up to the dependency's ``retry_rounds``
(default 3); then the node's fallback, the flow's fallback flow, a person. A failure
that is the request's own (a ``500``, a ``404``) ending a round ends the node there, as
another round would meet it again (issue 22). The pure decision is
:func:`trilha.core.policies.next_round`; this module tells which round a node is in
and whether a failure counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from trilha.config import DependencyConfig
from trilha.core.policies import ErrorKind
from trilha.resilience.breaker import call_of

#: the ``node_state`` key holding the round a node's attempts are in (absent: round 1);
#: kept with the node's state, so it survives a crash and ends when the node is left
RETRY_ROUND_KEY: Final = "retryRound"


def retry_round(node_state: Mapping[str, Any]) -> int:
    """The round of attempts a node is in (1 when unset or unreadable)."""
    value = node_state.get(RETRY_ROUND_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def counts_against(
    dependency: DependencyConfig | None, kind: ErrorKind, details: Mapping[str, Any]
) -> bool:
    """Whether a failed call says its dependency is in trouble, by the dependency's
    ``breaker.count``: the failures that earn another round (``False`` without one)."""
    if dependency is None:
        return False
    call = call_of(kind.value, details.get("status"))
    return call is not None and dependency.breaker.settings().counts(call)
