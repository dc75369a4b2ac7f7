"""``subflow``: call another flow in the same execution, and go on when it comes back.

The node runs twice. Entered, it renders its ``input`` with the caller's variables
and asks for the call (:class:`~trilha.processors.base.Call`); the engine resolves
the flow, pushes the caller on the call stack and runs the sub-flow. When the
sub-flow ends, the engine puts the caller back at this node with how it ended in the
node state (:data:`~trilha.core.frames.RETURNED`), and the node picks where to go:

* the branch for the outcome (``completed``, ``escalated``, ``failed``, ``timeout``,
  ``invalid_input``), taking the values handed back (``output``);
* else the node's ``next`` (never for ``timeout``: the engine brings a timeout back
  only to a caller with a branch for it, else the whole execution times out);
* else the outcome goes on up, as if this flow had ended the same way: ``completed``
  and ``invalid_input`` end this flow so, ``escalated`` hands off (to the desk when
  no caller above takes it), and ``failed`` fails this node (:class:`SubflowFailed`:
  its ``fallback``, then the flow-level chain).
"""

from __future__ import annotations

from typing import Any, ClassVar

from trilha.core.flow import SubflowNode
from trilha.core.frames import RETURNED
from trilha.core.states import ExecutionStatus, Outcome
from trilha.core.templates import render_value
from trilha.errors import SubflowFailed
from trilha.processors.base import Call, End, HandoffRequest, StepContext, StepResult


class SubflowProcessor:
    node_type: ClassVar[str] = "subflow"
    node_model: ClassVar[type[SubflowNode]] = SubflowNode
    effectful: ClassVar[bool] = False

    async def run(self, node: SubflowNode, ctx: StepContext) -> StepResult:
        returned = ctx.node_state.get(RETURNED)
        if isinstance(returned, dict):
            return _came_back(node, returned)
        values = {
            name: render_value(value, ctx.variables, ctx.budget(f"the input '{name}'"))
            for name, value in node.input.items()
        }
        return StepResult(
            call=Call(node.flow_id, node.version, values, dict(node.output)),
            output={"call": node.flow_id, "version": node.version, "input": sorted(values)},
        )


def _came_back(node: SubflowNode, returned: dict[str, Any]) -> StepResult:
    outcome = str(returned.get("outcome"))
    callee = str(returned.get("flowId"))
    why = str(returned.get("reason") or outcome)
    values = returned.get("values")
    handed = dict(values) if isinstance(values, dict) else {}
    target = node.branches.get(outcome)  # type: ignore[call-overload]
    if target is None and outcome != "timeout":
        target = node.next
    shown = {"returned": outcome, "flowId": callee, "reason": why, "next": target}
    if target is not None:
        return StepResult(next_node=target, variables=handed, output=shown)
    # nothing here takes this outcome: it goes on up as this flow's own ending
    said = f"sub-flow '{callee}' ended {outcome} ({why}) and node '{node.id}' has no"
    if outcome == "failed":
        raise SubflowFailed(f"{said} 'failed' branch nor next node", flowId=callee, nodeId=node.id)
    if outcome == "escalated":
        queue = returned.get("queue")
        reason = returned.get("handoffReason")
        return StepResult(
            variables=handed,
            handoff=HandoffRequest(
                queue if isinstance(queue, str) else "escalation",
                reason if isinstance(reason, str) else None,
            ),
            end=End(outcome=Outcome.ESCALATED, reason=f"{said} 'escalated' branch nor next"),
            output=shown,
        )
    if outcome == "timeout":
        return StepResult(
            end=End(ExecutionStatus.TIMEOUT, Outcome.TIMEOUT, f"{said} 'timeout' branch"),
            output=shown,
        )
    ending = Outcome.INVALID_INPUT if outcome == "invalid_input" else Outcome.COMPLETED
    return StepResult(
        variables=handed,
        end=End(outcome=ending, reason=f"{said} '{outcome}' branch nor next node"),
        output=shown,
    )
