"""The names the executions listing narrows by (states, outcomes, error kinds, ids), in
a module of their own: the listing's route and the routes that take the same filters
as a body (:mod:`trilha.api.execution_filters`) both read them, and a router's module
cannot be imported by what the routers' package imports."""

from __future__ import annotations

from typing import Literal, get_args

from trilha.core.flow import FLOW_REFERENCE_PATTERN
from trilha.core.policies import ErrorKind
from trilha.core.states import Outcome

StatusName = Literal[
    "running",
    "waiting_input",
    "waiting_delay",
    "recovering",
    "paused",
    "fallback",
    "degraded",
    "completed",
    "failed",
    "cancelled",
    "timeout",
]
OutcomeName = Literal[
    "completed", "escalated", "failed", "cancelled", "timeout", "invalid_input", "expired"
]
if set(get_args(OutcomeName)) != {o.value for o in Outcome}:
    raise RuntimeError("the outcomes changed: update OutcomeName")
ErrorKindName = Literal[
    "timeout",
    "connection",
    "rate_limited",
    "server",
    "client",
    "validation",
    "blocked",
    "dependency_unavailable",
    "configuration",
    "limit",
    "forbidden",
    "outside_window",
    "ambiguous",
    "internal",
]
if set(get_args(ErrorKindName)) != {k.value for k in ErrorKind}:
    raise RuntimeError("the error kinds changed: update ErrorKindName")
#: a flow as the store names it: ``NAME`` (shared, or resolved for the key's
#: institution) or ``INSTITUTION/NAME``
STORED_FLOW_ID_PATTERN = FLOW_REFERENCE_PATTERN
#: a node id, as flows write them
NODE_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
#: a dependency's name, as ``[dependencies.NAME]`` declares it
DEPENDENCY_PATTERN = r"^[A-Za-z0-9_.\-]+$"
