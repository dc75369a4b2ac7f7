"""trilha: a durable, self-healing execution engine for conversational flows.

The public surface is what this module exports; everything else may change.
"""

from trilha.config import Config, load_config
from trilha.core.execution import Execution
from trilha.core.flow import (
    Flow,
    NodeBase,
    NodeTypes,
    Problem,
    flow_json_schema,
    load_flow,
    parse_flow,
)
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.clock import FakeClock, SystemClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.errors import TrilhaError
from trilha.processors.base import StepContext, StepResult
from trilha.processors.registry import Processors
from trilha.store import open_store
from trilha.store.base import Store

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Dispatcher",
    "Engine",
    "Execution",
    "ExecutionStatus",
    "FakeClock",
    "Flow",
    "NodeBase",
    "NodeTypes",
    "Outcome",
    "Problem",
    "Processors",
    "StepContext",
    "StepResult",
    "Store",
    "SystemClock",
    "TrilhaError",
    "Worker",
    "__version__",
    "flow_json_schema",
    "load_config",
    "load_flow",
    "open_store",
    "parse_flow",
]
