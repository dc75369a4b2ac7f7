"""The process's drawings (trilha.api.drawings): one computation per flow version for any
number of waiting requests, made in a drawing process, kept within a byte bound, and
ended at the time budget with a 503 problem of kind limit that the same version then
gets at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from graph_shapes import chain, dense
from trilha.api.drawings import Drawings
from trilha.api.problems import Problem
from trilha.core.flow import load_flow
from trilha.core.graph import layout


@contextmanager
def drawings_of(**settings: Any) -> Iterator[Drawings]:
    """Drawings whose processes are stopped afterwards, as the server's are."""
    drawings = Drawings(**({"seconds": 60, "concurrency": 1, "max_bytes": 2**26} | settings))
    try:
        yield drawings
    finally:
        drawings.close()


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
    definition, reads = chain(2_000), []
    with drawings_of() as drawings:
        got = await asyncio.gather(
            *(drawings.get(("acme/chain", 1), reader(definition, reads)) for _ in range(8))
        )
        assert reads == ["chain"]
        assert all(d is got[0] for d in got)
        body = orjson.loads(got[0].response_body("e1"))
        ids = {"executionId", "flowId", "flowVersion", "start"}
        assert {k: body[k] for k in ids} == {
            "executionId": "e1",
            "flowId": "chain",
            "flowVersion": 1,
            "start": "n0",
        }
        assert {k: v for k, v in body.items() if k not in ids} == orjson.loads(
            layout(load_flow(definition)).encode()
        )
        assert await drawings.get(("acme/chain", 1), reader(definition, reads)) is got[0]
        assert reads == ["chain"]


async def test_the_kept_drawings_stay_within_their_bytes() -> None:
    """With room for one drawing, a second evicts the first, which is computed again."""
    small = chain(300)
    with drawings_of() as sizer:
        one = len((await sizer.get(("x", 1), reader(small, []))).members)
    reads: list[str] = []
    with drawings_of(max_bytes=one + one // 2) as drawings:
        for key in (("acme/a", 1), ("acme/b", 1), ("acme/a", 1), ("acme/a", 1)):
            await drawings.get(key, reader(small | {"id": key[0][-1]}, reads))
    assert reads == ["a", "b", "a"]


async def test_past_the_budget_a_limit_problem_then_refused_at_once() -> None:
    """A drawing longer than ``seconds`` ends every waiter with 503, kind limit, naming
    the setting; asked again, the version is refused without being read or drawn."""
    definition, reads = dense(), []
    with drawings_of(seconds=0.02) as drawings:
        answers = await asyncio.gather(
            *(drawings.get(("acme/dense", 1), reader(definition, reads)) for _ in range(3)),
            return_exceptions=True,
        )
        assert reads == ["dense"]
        for answer in answers:
            assert isinstance(answer, Problem) and answer.status == 503
            assert answer.extra["kind"] == "limit"
            assert answer.extra["setting"] == "api.graph_seconds"
            assert int(answer.headers["Retry-After"]) >= 1
        with pytest.raises(Problem) as again:
            await drawings.get(("acme/dense", 1), reader(definition, reads))
        assert again.value.status == 503 and reads == ["dense"]
        # another owner's flow of the same name is not refused (given the time to be drawn)
        drawings.seconds = 60
        other = await drawings.get(("beta/dense", 1), reader(chain(10) | {"id": "dense"}, reads))
        assert other.flow_id == "dense" and reads == ["dense", "dense"]


async def test_a_drawing_takes_none_of_the_event_loops_time() -> None:
    """While the largest flow is drawn, the event loop of the serving process keeps
    its ticks: the drawing runs in another process, not a thread of this one."""
    late: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            late.append(loop.time() - before - 0.005)

    with drawings_of() as drawings:
        await drawings.get(("acme/warm", 1), reader(chain(10) | {"id": "warm"}, []))
        ticks = asyncio.create_task(ticker())
        drawn = await drawings.get(("acme/dense", 1), reader(dense(), []))
        stop.set()
        await ticks
    assert drawn.flow_id == "dense"
    assert len(late) > 20
    assert max(late) < 0.5  # a thread would hold the loop for ~1 s in 5 ms slices
