"""A noisy neighbour: one institution's worst flows against another's conversations.

    python bench/neighbours.py [--conversations 20] [--seconds 20] [--json]

Starts a real ``trilha serve`` (SQLite ``synchronous=FULL``, a webhook channel to a
receiver in this process) with two institutions. Institution *beta* keeps
``--conversations`` echo conversations busy (a reply, the bot's answer at the
webhook, the next reply), first alone and then while institution *acme* runs the
worst its operator key can publish (issue 14's findings), all at once:

- a question whose pattern is ``(a+)+$``, answered with 4,096-character replies;
- ``set`` nodes building lists of references to one large string, and a chain of
  ``x * x``;
- loops through a 1 ms delay (each ends at ``max_steps_without_input``);
- the graph of the largest flow validation accepts (5,000 nodes with long edges),
  a new version each time so no drawing is served from the cache;
- as many event streams as its key may hold, and one more (refused: 429).

Prints beta's reply latency (POST of the reply to the bot's answer at the webhook:
p50, p99, max) and rate in both phases, what acme got done, and every unexpected
answer. With ``--json`` prints one JSON object instead (the acceptance test's form).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from _report import add_store_dir, drop_store_folder, fmt, percentile, print_table, store_folder
from api import ECHO, TRILHA, Receiver, converse, free_port
from trilha.api.auth import new_key
from trilha.store import open_store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from graph_shapes import long_edges  # noqa: E402 - the shapes the graph tests draw
from hostile_flows import LOOP, REGEX, VALUES  # noqa: E402 - the flows the tests refuse

ATTACKS = ("regex", "values", "loops", "graphs", "streams")


async def make_keys(store_url: str, wanted: dict[str, int]) -> dict[str, list[str]]:
    """Operator keys per institution, made in the store as ``trilha keys create`` does."""
    store = open_store(store_url)
    await store.open()
    keys: dict[str, list[str]] = {}
    try:
        for institution, count in wanted.items():
            for _ in range(count):
                key, plain = new_key(institution, "operator", now=time.time())
                await store.create_api_key(key)
                keys.setdefault(institution, []).append(plain)
    finally:
        await store.close()
    return keys


def start_server(
    folder: Path, hook_port: int, conversations: int
) -> tuple[subprocess.Popen[str], str, dict[str, list[str]]]:
    """``trilha serve`` with a webhook channel to ``hook_port`` and the default rate
    limits; acme gets one key, beta one per conversation (a key's 50 requests a
    second would bound beta's rate, not the neighbour)."""
    api_port = free_port()
    store = f"sqlite:///{folder / 'neighbours.db'}"
    (folder / "trilha.toml").write_text(
        f'[channel]\nkind = "webhook"\nurl = "http://127.0.0.1:{hook_port}/messages"\n'
        f'[logging]\nlevel = "error"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    keys = asyncio.run(make_keys(store, {"acme": 1, "beta": conversations}))
    server = subprocess.Popen(
        [str(TRILHA), "serve", "--port", str(api_port), "--store", store],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return server, f"http://127.0.0.1:{api_port}", keys


class Attacker:
    """Institution acme doing its worst until told to stop; counts what it got done."""

    def __init__(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        self.client = client
        self.stop = stop
        self.counts: dict[str, int] = {}
        self.graph_seconds: list[float] = []
        self.unexpected: list[str] = []

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def expect(self, response: httpx.Response, *statuses: int) -> bool:
        """Whether the answer was one of ``statuses``; past the key's rate limit, waits
        as told (acme spends its whole budget: that is the attack)."""
        if response.status_code in statuses:
            return True
        if response.status_code == 429:
            self.count("rate limited (429)")
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            return False
        self.unexpected.append(f"acme {response.request.url.path}: {response.status_code}")
        return False

    async def start(self, flow: str, conversation: str) -> str | None:
        started = await self.client.post(
            "/v1/executions",
            json={
                "flowId": flow,
                "conversationId": conversation,
                "contactId": f"k-{conversation}",
                "variables": {"x": 99},
                "replace": True,
            },
        )
        if not await self.expect(started, 201):
            return None
        execution_id: str = started.json()["executionId"]
        return execution_id

    async def regex_bomb(self, lane: int) -> None:
        n = 0
        while not self.stop.is_set():
            conversation = f"regex-{lane}-{n}"
            n += 1
            if await self.start("regex", conversation) is None:
                continue
            await asyncio.sleep(0.05)
            for i in range(100):
                if self.stop.is_set():
                    return
                reply = await self.client.post(
                    f"/v1/conversations/{conversation}/messages",
                    json={
                        "messageId": f"{conversation}-{i}",
                        "contactId": f"k-{conversation}",
                        "text": "a" * 4_096 + "!",
                    },
                )
                if reply.status_code == 409:  # the question gave up: a new conversation
                    break
                if await self.expect(reply, 202):
                    self.count("regex replies")
                await asyncio.sleep(0.02)

    async def values(self) -> None:
        n = 0
        while not self.stop.is_set():
            if await self.start("values", f"values-{n % 20}") is not None:
                self.count("value bombs")
            n += 1
            await asyncio.sleep(0.05)

    async def loops(self) -> None:
        n = 0
        while not self.stop.is_set():
            if await self.start("loop", f"loop-{n % 5}") is not None:
                self.count("delay loops")
            n += 1
            await asyncio.sleep(0.5)

    async def graphs(self) -> None:
        flow = long_edges()
        version = 0
        while not self.stop.is_set():
            version += 1
            flow["nodes"][0]["label"] = f"version {version}"  # a new version: no cache
            published = await self.client.put("/v1/flows/largest", json=flow | {"id": "largest"})
            if not await self.expect(published, 201):
                continue
            execution_id = await self.start("largest", "graph")
            if execution_id is None:
                continue
            began = time.perf_counter()
            drawn = await self.client.get(f"/v1/executions/{execution_id}/graph", timeout=120)
            if await self.expect(drawn, 200, 503):
                self.count("graphs drawn" if drawn.status_code == 200 else "graphs refused")
                self.graph_seconds.append(time.perf_counter() - began)

    async def streams(self, url: str, key: str) -> None:
        """Hold as many streams as the key may, and ask for one more."""
        async with contextlib.AsyncExitStack() as stack:
            headers = {"Authorization": f"Bearer {key}"}
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, headers=headers, timeout=httpx.Timeout(10.0, read=None)
                )
            )
            for _ in range(200):
                response = await stack.enter_async_context(client.stream("GET", "/v1/events"))
                if response.status_code == 429:
                    self.count("streams refused (429)")
                    break
                if not await self.expect(response, 200):
                    break
                self.count("streams held")
            await self.stop.wait()


async def beta_phase(
    url: str, keys: list[str], receiver: Receiver, conversations: int, seconds: float, tag: str
) -> dict[str, Any]:
    latencies: list[float] = []
    answers: list[float] = []
    failures: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
                )
            )
            for key in keys
        ]
        begin = time.perf_counter()
        until = begin + seconds
        await asyncio.gather(
            *(
                converse(
                    clients[i],
                    receiver,
                    f"{tag}-{i}",
                    until,
                    latencies,
                    answers,
                    failures,
                    "beta",
                )
                for i in range(conversations)
            )
        )
        elapsed = time.perf_counter() - begin
    ms = [x * 1000 for x in latencies]
    return {
        "replies": len(ms),
        "replies_per_second": len(ms) / elapsed,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms, default=float("nan")),
        "failures": failures,
    }


async def run(
    args: argparse.Namespace, url: str, keys: dict[str, list[str]], hook_port: int
) -> Any:
    receiver = Receiver()
    hook = uvicorn.Server(
        uvicorn.Config(
            receiver, host="127.0.0.1", port=hook_port, log_config=None, access_log=False
        )
    )
    hook_task = asyncio.create_task(hook.serve())
    try:
        headers = {"Authorization": f"Bearer {keys['acme'][0]}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as acme:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await acme.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            beta_headers = {"Authorization": f"Bearer {keys['beta'][0]}"}
            async with httpx.AsyncClient(base_url=url, headers=beta_headers) as beta:
                (await beta.put("/v1/flows/echo", json=ECHO)).raise_for_status()
            for flow in (REGEX, VALUES, LOOP):
                (await acme.put(f"/v1/flows/{flow['id']}", json=flow)).raise_for_status()
            alone = await beta_phase(
                url, keys["beta"], receiver, args.conversations, args.seconds, "alone"
            )
            stop = asyncio.Event()
            attacker = Attacker(acme, stop)
            chosen = set(args.attacks.split(","))
            plan: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
                *(("regex", partial(attacker.regex_bomb, lane)) for lane in range(3)),
                ("values", attacker.values),
                ("loops", attacker.loops),
                ("graphs", attacker.graphs),
                ("streams", partial(attacker.streams, url, keys["acme"][0])),
            ]
            attacks = [
                asyncio.create_task(make(), name=name) for name, make in plan if name in chosen
            ]
            await asyncio.sleep(1.0)  # let the attacks get going first
            beside = await beta_phase(
                url, keys["beta"], receiver, args.conversations, args.seconds, "beside"
            )
            stop.set()
            # a drawing in flight (publishing the largest flow, starting it, laying it out
            # takes seconds on a busy server) is let finish, so that it counts: the other
            # attacks loop on short requests and are cut off
            drawing = [t for t in attacks if t.get_name() == "graphs"]
            if drawing:
                await asyncio.wait(drawing, timeout=60)
            for task in attacks:
                task.cancel()
            results = await asyncio.gather(*attacks, return_exceptions=True)
            errors = [
                repr(r)
                for r in results
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
            ]
    finally:
        hook.should_exit = True
        await hook_task
    return {
        "conversations": args.conversations,
        "seconds": args.seconds,
        "alone": alone,
        "beside_acme": beside,
        "acme": attacker.counts,
        "acme_graph_seconds": attacker.graph_seconds,
        "unexpected": attacker.unexpected + errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help=f"acme's attacks to run, comma-separated (default all: {','.join(ATTACKS)})",
    )
    add_store_dir(parser)
    args = parser.parse_args()
    folder = store_folder(args.store_dir)
    try:
        hook_port = free_port()
        server, url, keys = start_server(folder, hook_port, args.conversations)
        try:
            result = asyncio.run(run(args, url, keys, hook_port))
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=60)
        result["server_exit"] = server.returncode
        result["server_stderr"] = stderr[-2_000:]
    finally:
        drop_store_folder(folder, args.store_dir)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"beta: {args.conversations} echo conversations for {args.seconds:g}s each phase;"
        " acme: the worst flows of issue 14 at once (trilha serve, SQLite synchronous=FULL)"
    )
    for title, phase in (
        ("beta alone", result["alone"]),
        ("beta beside acme", result["beside_acme"]),
    ):
        print_table(
            f"{title}: reply -> bot's answer at the webhook",
            [
                ("replies", fmt(phase["replies"])),
                ("replies/s", fmt(phase["replies_per_second"], digits=1)),
                ("latency p50", fmt(phase["p50_ms"], "ms", 1)),
                ("latency p99", fmt(phase["p99_ms"], "ms", 1)),
                ("latency max", fmt(phase["max_ms"], "ms", 1)),
                ("failed requests", fmt(len(phase["failures"]))),
            ],
        )
    graph = result["acme_graph_seconds"]
    print_table(
        "acme, at the same time",
        [(what, fmt(n)) for what, n in sorted(result["acme"].items())]
        + [("graph answer p50", fmt(percentile(graph, 0.5), "s", 2))],
    )
    for line in result["unexpected"][:10]:
        print("  unexpected:", line)


if __name__ == "__main__":
    main()
