"""Who owns a flow, and what a flow may reach (DESIGN §9). Pure: no I/O.

Institutions write their own flows, so a flow is untrusted input: what it names
must stay inside its owner. Every stored flow has an owner, read from its stored
id: ``INSTITUTION/NAME`` for a flow an institution published, a bare ``NAME`` for
a *shared* flow (the operator's ``--flows DIR``, or an admin's publish without an
institution). The rules, checked when a flow is published and again when it runs
(a stored flow may predate a rule, and the store is not the place to trust):

* a flow enters (``jump``, ``settings.fallback.fallbackFlowId``, any node that
  enters another flow) only its own institution's flows and shared ones. A bare
  name means the running institution's own flow of that name, else the shared
  one, as on the API; an ``OWNER/NAME`` reference must name the running
  institution. A shared flow names flows by their bare name only, so it runs
  the same for every institution and never reaches a fixed one;
* a dependency says who may call it (``institutions = [...]`` or ``["*"]``);
  one without the key serves only the shared flows. A shared flow running for
  institution A acts as A.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from trilha.errors import AccessDenied

__all__ = [
    "EVERY_INSTITUTION",
    "check_entry",
    "dependency_denial",
    "dependency_problems",
    "flow_candidates",
    "reference_denial",
    "split_id",
    "stored_id",
]

#: the ``institutions`` entry that lets every institution call a dependency
EVERY_INSTITUTION = "*"


def split_id(stored: str) -> tuple[str | None, str]:
    """(owner, name) of a stored flow id; shared flows have no owner."""
    owner, sep, name = stored.partition("/")
    return (owner, name) if sep else (None, stored)


def stored_id(owner: str | None, name: str) -> str:
    """The stored id of ``owner``'s flow ``name`` (the bare name for a shared flow)."""
    return f"{owner}/{name}" if owner else name


def reference_denial(flow_id: str, reference: str) -> str | None:
    """Why the flow stored as ``flow_id`` may not name ``reference``, or ``None``.

    Decided from the ids alone, so it holds wherever a flow is checked (``trilha
    validate``, ``--flows DIR``, ``PUT /v1/flows``) without asking the store."""
    ref_owner, name = split_id(reference)
    if ref_owner is None:
        return None
    owner, _ = split_id(flow_id)
    if owner is None:
        return (
            f"a shared flow names other flows by name only ('{name}', not '{reference}'):"
            " it enters the running institution's flow of that name or the shared one"
        )
    if ref_owner != owner:
        return (
            f"flow '{reference}' belongs to another institution; a flow may enter only"
            f" its own institution's flows and shared ones"
        )
    return None


def flow_candidates(institution_id: str | None, reference: str) -> list[str]:
    """The stored ids ``reference`` may mean for an execution of ``institution_id``, in
    the order to try them: the institution's own flow first, then the shared one.

    Raises :class:`AccessDenied` for another owner's flow (never entered, whoever
    wrote the reference)."""
    owner, name = split_id(reference)
    if owner is not None:
        if owner != institution_id:
            raise AccessDenied(
                f"flow '{reference}' belongs to another institution: an execution of"
                f" '{institution_id}' may enter only its own flows and shared ones",
                flowId=reference,
            )
        return [reference]
    if institution_id:
        return [stored_id(institution_id, name), name]
    return [name]


def check_entry(institution_id: str, flow_id: str) -> None:
    """Refuse to run the flow stored as ``flow_id`` for another institution."""
    owner, _ = split_id(flow_id)
    if owner is not None and owner != institution_id:
        raise AccessDenied(
            f"flow '{flow_id}' belongs to another institution than '{institution_id}'",
            flowId=flow_id,
        )


def dependency_denial(
    name: str,
    allowed: Sequence[str] | None,
    *,
    flow_id: str,
    institution_id: str | None,
) -> str | None:
    """Why the flow stored as ``flow_id``, running for ``institution_id`` (``None``: at
    publish, for whoever will run it), may not call dependency ``name``, or ``None``.

    ``allowed`` is the dependency's ``institutions`` (``None``: shared flows only)."""
    owner, _ = split_id(flow_id)
    acting = owner or institution_id
    if owner is not None and institution_id is not None and owner != institution_id:
        return f"flow '{flow_id}' does not belong to institution '{institution_id}'"
    if allowed is None:
        if owner is None:
            return None
        return (
            f"dependency '{name}' serves only the shared flows: its configuration has no"
            f" institutions list naming '{owner}'"
        )
    if EVERY_INSTITUTION in allowed or acting is None or acting in allowed:
        return None
    return f"institution '{acting}' may not call dependency '{name}' (not in its institutions)"


def dependency_problems(
    flow_id: str,
    uses: Iterator[tuple[str, str]],
    declared: Mapping[str, Sequence[str] | None],
) -> Iterator[tuple[str, str]]:
    """``(node id, reason)`` for every dependency the flow's owner may not call, at
    publish: undeclared ones too, for an institution's flow (a shared flow's are
    only warned about by the operator's tools: its author runs the configuration)."""
    owner, _ = split_id(flow_id)
    for node_id, name in uses:
        if name not in declared:
            if owner is not None:
                yield node_id, f"dependency '{name}' is not declared in the configuration"
            continue
        reason = dependency_denial(name, declared[name], flow_id=flow_id, institution_id=None)
        if reason is not None:
            yield node_id, reason
