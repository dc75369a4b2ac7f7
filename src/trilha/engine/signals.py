"""Sending a signal to an execution: what ``POST /v1/executions/{id}/signals/{event}``
and ``trilha signal`` share.

The signal is checked against its bounds (the event's name, the id, the payload's
size: ``[engine] max_value_bytes``) before anything is stored, then kept by the store
once per ``signalId`` (:meth:`~trilha.store.base.Store.deliver_signal`), which wakes
the execution if it waits for that event. The engine takes it when the execution
reaches (or sits at) a ``wait_event`` node of the event (:mod:`trilha.core.signals`).
"""

from __future__ import annotations

from typing import Any

from trilha.core.signals import check_signal
from trilha.engine.engine import Engine
from trilha.engine.turn import new_id
from trilha.store.base import SignalResult


async def send_signal(
    engine: Engine,
    execution_id: str,
    event: str,
    *,
    payload: Any = None,
    signal_id: str | None = None,
    institution_id: str | None = None,
) -> SignalResult:
    """Store a signal of ``event`` for the execution (of ``institution_id`` only, when
    given: another institution's is not found). A bad event or id raises
    :class:`~trilha.errors.ConfigError`, a payload too large or one signal too many
    :class:`~trilha.errors.LimitExceeded`, an ended execution
    :class:`~trilha.errors.ExecutionEnded` (unless the ``signal_id`` was received
    before: a repeat is answered with the first signal, whenever it comes)."""
    bounds = engine.config.engine
    signal_id = signal_id or new_id()
    check_signal(event, signal_id, payload, max_bytes=bounds.max_value_bytes)
    return await engine.store.deliver_signal(
        execution_id=execution_id,
        institution_id=institution_id,
        event=event,
        signal_id=signal_id,
        payload=payload,
        now=engine.clock.now(),
        max_pending=bounds.max_pending_signals,
    )
