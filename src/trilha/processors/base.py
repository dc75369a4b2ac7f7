"""What a node processor is: a function of the node and a context to a result.

Processors decide; the engine applies. A processor never writes to the store
or sends a message itself: it returns a :class:`StepResult` naming the
messages, variables, wait or end, and the engine commits them atomically with
the checkpoint. That keeps every node type crash-safe without each author
having to think about it.

Third-party node types register a processor class in the
``trilha.processors`` entry-point group; its ``node_model`` (a subclass of
:class:`~trilha.core.flow.NodeBase`) joins the flow schema and validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from trilha.config import Config
from trilha.core.budget import Budget
from trilha.core.content import CAPABILITIES, Said
from trilha.core.execution import InboundMessage
from trilha.core.flow import Flow, NodeBase
from trilha.core.signals import Signal
from trilha.core.states import ExecutionStatus, Outcome
from trilha.core.window import ServiceWindow
from trilha.resilience.breaker import BreakerRegistry


@dataclass(frozen=True, slots=True)
class WaitInput:
    """Wait for the contact's reply (bounded by the flow's input timeout)."""

    timeout_seconds: float | None = None
    #: when the wait times out, when it began before this step (a reminder keeps the
    #: deadline of the question it repeats); wins over ``timeout_seconds``
    due_at: float | None = None


@dataclass(frozen=True, slots=True)
class WaitTimer:
    """Wait on a durable timer until ``due_at`` (epoch seconds)."""

    due_at: float


@dataclass(frozen=True, slots=True)
class WaitEvent:
    """Wait for a signal of ``event`` until ``due_at`` (epoch seconds): ``waiting_input``,
    waiting for ``event:<event>`` (:mod:`trilha.core.signals`)."""

    event: str
    due_at: float


@dataclass(frozen=True, slots=True)
class WaitRecovery:
    """The engine's own wait: a retry backoff or a dependency to come back (``recovering``)."""

    due_at: float
    waiting_for: str  # "retry" | "dependency"
    reason: str


@dataclass(frozen=True, slots=True)
class WaitHuman:
    """Wait while a person holds the conversation (``paused``, waiting for ``human``)
    until it is handed back, or until ``due_at`` passes with no agent message (the
    bot takes it back by itself); ``None``: no such deadline."""

    due_at: float | None = None


@dataclass(frozen=True, slots=True)
class End:
    status: ExecutionStatus = ExecutionStatus.COMPLETED
    outcome: Outcome = Outcome.COMPLETED
    reason: str = "reached end"


@dataclass(frozen=True, slots=True)
class Jump:
    flow_id: str
    version: int | None = None
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """Run flow ``flow_id`` as a sub-flow with ``input`` as its variables, and come back
    to this node when it ends (``output``: caller variable -> the sub-flow's variable).
    The engine resolves the flow (its owner's, else the shared one) and pins it: it
    fills in the stored id, the version and its start node."""

    flow_id: str
    version: int | None = None
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)
    #: the sub-flow's start node, once resolved
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    queue: str
    reason: str | None = None
    #: ``end`` or ``wait`` (the handoff node's ``mode``)
    mode: str = "end"


@dataclass(slots=True)
class StepResult:
    """What running one node decided. Exactly one of next/wait/end/jump/call should be
    set; with none, the node's ``next`` is followed (or the execution completes)."""

    next_node: str | None = None
    wait: WaitInput | WaitTimer | WaitEvent | WaitRecovery | WaitHuman | None = None
    end: End | None = None
    jump: Jump | None = None
    call: Call | None = None
    #: what to say: plain texts, or rendered content (:func:`trilha.processors.saying.say`)
    messages: list[str | Said] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    #: scratch kept while the execution stays on this node; cleared when it moves on
    node_state: dict[str, Any] | None = None
    handoff: HandoffRequest | None = None
    #: the inbound message this step consumed (marked applied in the same commit)
    consumed_input: bool = False
    #: the signal of the context (:attr:`StepContext.signal`) this step consumed (marked
    #: consumed in the same commit)
    consumed_signal: bool = False
    #: shown in the step timeline
    output: Any = None
    #: the node ran on reduced function (a dependency was down): the execution
    #: shows ``degraded`` until it waits or ends
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything a processor may read. Variables are a snapshot: change them via the result."""

    execution_id: str
    institution_id: str
    conversation_id: str
    contact_id: str
    flow: Flow
    variables: dict[str, Any]
    node_state: dict[str, Any]
    now: float
    config: Config
    #: the contact's message that woke the execution, if any
    inbound: InboundMessage | None = None
    #: why the execution was woken while sitting on this node: "input", "timer", "signal"
    #: or None (entered)
    resumed_by: str | None = None
    #: a ``wait_event`` node's: the oldest pending signal of its event, if any
    signal: Signal | None = None
    #: the process's circuit breakers, one per dependency, shared by every execution
    breakers: BreakerRegistry | None = None
    #: an effectful step's idempotency key, the same on every attempt and after a crash
    #: (:func:`trilha.resilience.dependencies.step_key`); ``None`` for a pure node
    idempotency_key: str | None = None
    #: this attempt already began in a worker that died or lost the execution during it:
    #: its call may have gone out (an effectful node decides whether to make it again)
    interrupted: bool = False
    #: what the channel can show besides text (``buttons``, ``list``, ``media``,
    #: ``location``): the rest is degraded (:func:`trilha.core.content.degrade`)
    renders: frozenset[str] = CAPABILITIES
    #: the channel's customer-service window and when the contact last wrote, read for
    #: a node that speaks on a channel that has one (WhatsApp's 24 hours); ``None``:
    #: the channel has none, anything may be said any time
    window: ServiceWindow | None = None

    def budget(self, what: str = "the value") -> Budget:
        """A fresh bound (``[engine] max_value_bytes``) for one value the step builds:
        a message, a request body, an expression's result (DESIGN §9)."""
        return Budget(self.config.engine.max_value_bytes, what)


class Processor(Protocol):
    """Runs one node type."""

    node_type: ClassVar[str]
    node_model: ClassVar[type[NodeBase]]
    #: True when the node acts on the outside world (an HTTP call): the engine commits
    #: the steps before it first, and holds the lease with heartbeats while it runs
    effectful: ClassVar[bool]

    async def run(self, node: Any, ctx: StepContext) -> StepResult: ...
