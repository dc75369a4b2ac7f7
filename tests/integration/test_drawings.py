"""The process's drawings (trilha.api.drawings): one computation per flow version for any
number of waiting requests, kept within a byte bound, and ended at the time budget with
a 503 problem of kind limit that the same version then gets at once."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from graph_shapes import chain, dense
from trilha.api.drawings import Drawings
from trilha.api.problems import Problem
from trilha.core.flow import NodeTypes, load_flow
from trilha.core.graph import layout

TYPES = NodeTypes()


def reader(definition: dict[str, Any], reads: list[str]) -> Callable[[], Awaitable[Any]]:
    """The route's ``definition()``, counting the reads (one per computation)."""

    async def read() -> Any:
        reads.append(definition["id"])
        await asyncio.sleep(0)
        return definition

    return read


async def test_concurrent_requests_share_one_computation() -> None:
    """Eight requests at once for one flow version read and lay it out once, all get
    the same answer, the same as the layout's own JSON; a later one is kept."""
    drawings = Drawings(seconds=60, concurrency=1, max_bytes=2**26)
    definition, reads = chain(2_000), []
    got = await asyncio.gather(
        *(drawings.get(("acme/chain", 1), reader(definition, reads), TYPES) for _ in range(8))
    )
    assert reads == ["chain"]
    assert all(d is got[0] for d in got)
    body = orjson.loads(got[0].response_body("e1"))
    assert {k: body[k] for k in ("executionId", "flowId", "flowVersion", "start")} == {
        "executionId": "e1",
        "flowId": "chain",
        "flowVersion": 1,
        "start": "n0",
    }
    assert {
        k: v for k, v in body.items() if k not in {"executionId", "flowId", "flowVersion", "start"}
    } == orjson.loads(layout(load_flow(definition)).encode())
    assert await drawings.get(("acme/chain", 1), reader(definition, reads), TYPES) is got[0]
    assert reads == ["chain"]
    assert gc.isenabled()  # the pause of the collector ended with the drawing


async def test_the_kept_drawings_stay_within_their_bytes() -> None:
    """With room for one drawing, a second evicts the first, which is computed again."""
    small = chain(300)
    one = len((await Drawings(seconds=60, concurrency=1, max_bytes=2**26).get(
        ("x", 1), reader(small, []), TYPES)).members)  # fmt: skip
    drawings = Drawings(seconds=60, concurrency=1, max_bytes=one + one // 2)
    reads: list[str] = []
    for key in (("acme/a", 1), ("acme/b", 1), ("acme/a", 1), ("acme/a", 1)):
        await drawings.get(key, reader(small | {"id": key[0][-1]}, reads), TYPES)
    assert reads == ["a", "b", "a"]


async def test_past_the_budget_a_limit_problem_then_refused_at_once() -> None:
    """A drawing longer than ``seconds`` ends every waiter with 503, kind limit, naming
    the setting; asked again, the version is refused without being read or drawn."""
    drawings = Drawings(seconds=0.02, concurrency=1, max_bytes=2**26)
    definition, reads = dense(), []
    answers = await asyncio.gather(
        *(drawings.get(("acme/dense", 1), reader(definition, reads), TYPES) for _ in range(3)),
        return_exceptions=True,
    )
    assert reads == ["dense"]
    for answer in answers:
        assert isinstance(answer, Problem) and answer.status == 503
        assert answer.extra["kind"] == "limit" and answer.extra["setting"] == "api.graph_seconds"
        assert int(answer.headers["Retry-After"]) >= 1
    with pytest.raises(Problem) as again:
        await drawings.get(("acme/dense", 1), reader(definition, reads), TYPES)
    assert again.value.status == 503 and reads == ["dense"]
    # another owner's flow of the same name is not refused (given the time to be drawn)
    drawings.seconds = 60
    other = await drawings.get(("beta/dense", 1), reader(chain(10) | {"id": "dense"}, reads), TYPES)
    assert other.flow_id == "dense" and reads == ["dense", "dense"]
