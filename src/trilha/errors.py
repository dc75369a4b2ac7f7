"""The one exception tree of trilha.

Every error a user can see derives from :class:`TrilhaError` and carries a
stable ``code`` that the CLI prints and, later, the API returns::

    TrilhaError
    ├── ConfigError                 bad configuration or command-line value
    ├── FlowError                   a flow could not be loaded
    │   ├── FlowValidationError     the flow breaks a rule (carries problems)
    │   └── FlowNotFound            no such flow or version in the store
    ├── ExpressionError             a condition or template could not be parsed/evaluated
    ├── LimitExceeded               a value, a reply or an execution passed one of its bounds
    ├── IllegalTransition           a state change the transition table refuses
    ├── StoreError                  the store failed
    │   ├── StoreUnavailable        cannot reach/open the store (retryable)
    │   ├── StaleLease              commit under a fencing token that is no longer current
    │   ├── ExecutionNotFound       no execution with that id
    │   ├── ExecutionEnded          the execution has ended and takes no more replies
    │   ├── ConversationBusy        the conversation already has an active execution
    │   ├── NotHeld                 no person holds the conversation (agent messages)
    │   └── CorruptedRecord         a stored row fails its checksum or schema
    ├── NodeError                   a processor failed while running a node
    │   ├── NodeTimeout             the per-node timeout passed
    │   ├── BlockedAddress          the http node refused a private/loopback target
    │   ├── AccessDenied            another owner's flow, or a dependency not allowed
    │   ├── SubflowFailed           a sub-flow failed and its caller has no path for it
    │   ├── DependencyUnavailable   the dependency's circuit breaker is open
    │   └── OutsideWindow           the channel's customer-service window is closed
    └── ChannelError                an outbound message could not be delivered

Driver exceptions (``sqlite3``, ``httpx``) are mapped at the boundary and
chained with ``from exc`` so no driver type leaks to a caller.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TrilhaError(Exception):
    """Something went wrong in trilha."""

    code: ClassVar[str] = "trilha_error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.details = details
        super().__init__(message or (self.__doc__ or self.code).strip().splitlines()[0])


class ConfigError(TrilhaError):
    """The configuration is invalid."""

    code = "config_error"


class FlowError(TrilhaError):
    """The flow could not be loaded."""

    code = "flow_error"


class FlowValidationError(FlowError):
    """The flow is invalid."""

    code = "flow_invalid"

    def __init__(self, problems: list[Any], message: str | None = None) -> None:
        self.problems = problems
        first = "; ".join(str(p) for p in problems[:3])
        super().__init__(message or f"flow is invalid: {first}")


class FlowNotFound(FlowError):
    """No such flow in the store."""

    code = "flow_not_found"


class ExpressionError(TrilhaError):
    """The expression could not be evaluated."""

    code = "expression_error"


class LimitExceeded(TrilhaError):
    """A bound was passed (a value's size, an integer's range, a reply's length...).

    Its ``kind`` detail is ``limit``: the failing node takes its fallback path like
    after any other error that retrying cannot mend."""

    code = "limit_exceeded"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message, **({"kind": "limit"} | details))


class IllegalTransition(TrilhaError):
    """The state transition is not allowed."""

    code = "illegal_transition"


class StoreError(TrilhaError):
    """The store failed."""

    code = "store_error"


class StoreUnavailable(StoreError):
    """The store is unreachable."""

    code = "store_unavailable"


class SchemaMismatch(StoreError):
    """The store's schema is not the one this trilha was built for (``trilha migrate``)."""

    code = "schema_mismatch"


class StaleLease(StoreError):
    """The lease on the execution is no longer held by this worker."""

    code = "stale_lease"


class ExecutionNotFound(StoreError):
    """No such execution."""

    code = "execution_not_found"


class ExecutionEnded(StoreError):
    """The execution has ended; it takes no more replies."""

    code = "execution_ended"


class ConversationBusy(StoreError):
    """The conversation already has an active execution."""

    code = "conversation_busy"


class NotHeld(StoreError):
    """No person holds the conversation: its execution is not waiting for one."""

    code = "not_held"


class CorruptedRecord(StoreError):
    """A stored record failed its checksum or schema check."""

    code = "corrupted_record"


class NodeError(TrilhaError):
    """A node failed."""

    code = "node_error"


class NodeTimeout(NodeError):
    """The node took longer than its timeout."""

    code = "node_timeout"


class BlockedAddress(NodeError):
    """The target address is private, loopback or link-local and not declared."""

    code = "blocked_address"


class AccessDenied(NodeError):
    """The flow may not use what it named: another owner's flow, or a dependency its
    institution is not allowed to call (DESIGN §9)."""

    code = "access_denied"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message, **({"kind": "forbidden"} | details))


class SubflowFailed(NodeError):
    """The sub-flow failed, and the calling node has no ``failed`` branch nor ``next``."""

    code = "subflow_failed"


class DependencyUnavailable(NodeError):
    """The dependency is unavailable (its circuit breaker is open)."""

    code = "dependency_unavailable"


class OutsideWindow(NodeError):
    """The contact last wrote longer ago than the channel's customer-service window
    (WhatsApp's 24 hours), and the node has no template to send instead.

    Its ``kind`` detail is ``outside_window``: no retry mends it (only the contact
    writing again does), so the node takes its fallback path at once."""

    code = "outside_window"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message, **({"kind": "outside_window"} | details))


class ChannelError(TrilhaError):
    """The message could not be delivered."""

    code = "channel_error"
