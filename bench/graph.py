"""Drawing the largest flows: layout time per shape, and the event loop while a graph is served.

    python bench/graph.py [--repeat 3] [--shapes chain,dense,...] [--no-server] [--store-dir DIR]

1. In this process, for each shape of ``tests/graph_shapes.py`` (the largest flows
   ``trilha validate`` accepts, in the shapes hardest to draw: a 5,000-node chain,
   a fan-out thousands of nodes wide, long edges over thousands of layers, wide
   layers of crossing edges, thousands of loops, 32,000 random edges in 1 MiB):
   the time to parse the flow, lay it out and encode the answer (best of
   ``--repeat``), with the waypoints made and the answer's size.
2. trilha's own app (``create_app``, SQLite in a temporary folder, one worker loop)
   under uvicorn in this process, with a ticker task on its event loop waking every
   millisecond and noting how late it wakes. A client in another process (so that
   its own work does not hold this interpreter's lock) publishes each shape as an
   institution's flow, starts an execution and asks for its graph, cold and then
   warm, while a client of another institution, in a third process, reads one of
   its executions over and over. Printed per shape: the cold and warm answer times, the ticker's
   worst and 99th-percentile lateness during the cold answer (a stall of the event
   loop: every request of the process waits that long), and the other client's
   worst latency meanwhile.

It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from _report import add_store_dir, drop_store_folder, fmt, percentile, print_table, store_folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from graph_shapes import SHAPES, size, waiting  # noqa: E402  (tests/graph_shapes.py)

TRILHA = Path(sys.executable).parent / "trilha"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------- in process


def layout_figures(shapes: list[str], repeat: int) -> None:
    import orjson

    from trilha.core.flow import load_flow
    from trilha.core.graph import edges, layout

    rows: list[tuple[str, str]] = []
    for name in shapes:
        definition = SHAPES[name]()
        best = {"parse": float("inf"), "layout": float("inf"), "encode": float("inf")}
        for _ in range(repeat):
            gc.disable()  # as trilha serve does while it draws (see trilha.api.drawings)
            begin = time.perf_counter()
            flow = load_flow(definition)
            parsed = time.perf_counter()
            drawn = layout(flow)
            laid = time.perf_counter()
            body = drawn.encode()
            encoded = time.perf_counter()
            gc.enable()
            for step, took in (
                ("parse", parsed - begin),
                ("layout", laid - parsed),
                ("encode", encoded - laid),
            ):
                best[step] = min(best[step], took)
        count = len(edges(flow))
        bends = sum(len(d.points) for d in drawn.edges) - 2 * count
        rows.append(
            (
                f"{name}: {len(flow.nodes):,} nodes, {count:,} edges, {size(definition):,} B",
                f"parse {fmt(best['parse'] * 1000, 'ms')}, layout"
                f" {fmt(best['layout'] * 1000, 'ms')}, encode {fmt(best['encode'] * 1000, 'ms')},"
                f" total {fmt(sum(best.values()) * 1000, 'ms')};"
                f" {fmt(max(bends, 0))} bends, answer {fmt(len(body) / 2**20, 'MiB', 1)}",
            )
        )
        assert orjson.loads(body)["nodes"]  # the answer is whole
    print_table(f"layout in this process (best of {repeat})", rows)


# ------------------------------------------------------------------------- served


def client(url: str, key: str, shapes: list[str], out: Any) -> None:
    """In its own process: publish, start and draw each shape; timings to ``out``."""
    acme = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    results: dict[str, Any] = {}
    for name in shapes:
        execution = start(acme, waiting(SHAPES[name]()), name)
        time.sleep(0.3)  # the other tenant's reads have the server to themselves a moment
        cold_start = time.perf_counter()
        cold = acme.get(f"/v1/executions/{execution}/graph")
        cold_end = time.perf_counter()
        warm = acme.get(f"/v1/executions/{execution}/graph")
        results[name] = {
            "status": [cold.status_code, warm.status_code],
            "bytes": len(cold.content),
            "cold": cold_end - cold_start,
            "warm": time.perf_counter() - cold_end,
            "window": [cold_start, cold_end],
        }
    out.put(results)


def other_tenant(url: str, key: str, done: Any, out: Any) -> None:
    """In its own process: read one of its executions over and over until ``done``;
    ``(when answered, how long it took)`` of each to ``out``."""
    beta = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    small = {"id": "small", "start": "q", "nodes": [{"id": "q", "type": "question",
             "text": "?", "variable": "v"}]}  # fmt: skip
    path = f"/v1/executions/{start(beta, small, 'small')}"
    reads: list[tuple[float, float]] = []
    while not done.is_set():
        begin = time.perf_counter()
        beta.get(path).raise_for_status()
        now = time.perf_counter()
        reads.append((now, now - begin))
    out.put(reads)


def start(client: httpx.Client, definition: dict[str, Any], name: str) -> str:
    body = json.dumps(definition | {"id": name}, separators=(",", ":"))
    put = client.put(
        f"/v1/flows/{name}", content=body, headers={"Content-Type": "application/json"}
    )
    put.raise_for_status()
    started = client.post(
        "/v1/executions", json={"flowId": name, "conversationId": f"c-{name}", "contactId": "x"}
    )
    started.raise_for_status()
    execution: str = started.json()["executionId"]
    for _ in range(600):  # until it waits for the contact or has ended
        if client.get(f"/v1/executions/{execution}").json()["status"] != "running":
            break
        time.sleep(0.05)
    return execution


def make_keys(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    keys = {}
    for institution in ("acme", "beta"):
        made = subprocess.run(
            [str(TRILHA), "keys", "create", "--institution", institution, "--role", "operator",
             "--store", store],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        keys[institution] = made.stdout.strip().splitlines()[-1]
    return keys


async def served_figures(folder: Path, shapes: list[str]) -> None:
    from trilha.api.app import ServeOptions, create_app
    from trilha.config import Config

    store = f"sqlite:///{folder / 'bench-graph.db'}"
    keys = make_keys(store)
    config = Config.model_validate(
        {
            "channel": {"kind": "memory"},
            "api": {"rate_limit_per_second": 100_000, "rate_limit_burst": 100_000},
            "logging": {"level": "WARN"},
        }
    )
    app = create_app(ServeOptions(store_url=store, workers=1), config=config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(3_000):  # uvicorn says it started by a flag only
        if server.started:
            break
        await asyncio.sleep(0.01)

    ticks: list[tuple[float, float]] = []  # (woke at, how late)
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            begin = time.perf_counter()
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            ticks.append((now, now - begin - 0.001))

    ticking = asyncio.create_task(ticker())
    # perf_counter is the system's monotonic clock on Linux: the processes' times compare
    context = multiprocessing.get_context("spawn")
    drawn, read, done = context.Queue(), context.Queue(), context.Event()
    url = f"http://127.0.0.1:{port}"
    reader = context.Process(target=other_tenant, args=(url, keys["beta"], done, read))
    drawer = context.Process(target=client, args=(url, keys["acme"], shapes, drawn))
    reader.start()
    drawer.start()
    try:
        results = await asyncio.to_thread(drawn.get, True, 1_800)
        done.set()
        reads = await asyncio.to_thread(read.get, True, 60)
    finally:
        done.set()
        for process in (drawer, reader):
            await asyncio.to_thread(process.join, 60)
        stop.set()
        await ticking
        server.should_exit = True
        await serving
    rows: list[tuple[str, str]] = []
    for name in shapes:
        r = results[name]
        start_at, end_at = r["window"]
        late = [x * 1000 for at, x in ticks if start_at <= at <= end_at + 0.05]
        other = [x * 1000 for at, x in reads if start_at <= at <= end_at + 0.05]
        rows.append(
            (
                f"{name} (answers {r['status'][0]}/{r['status'][1]},"
                f" {fmt(r['bytes'] / 2**20, 'MiB', 1)})",
                f"cold {fmt(r['cold'] * 1000, 'ms')}, warm {fmt(r['warm'] * 1000, 'ms')};"
                f" loop late: worst {fmt(max(late, default=0), 'ms', 1)},"
                f" p99 {fmt(percentile(late, 0.99), 'ms', 1)};"
                f" other tenant's {len(other)} reads: p50 {fmt(percentile(other, 0.5), 'ms')},"
                f" worst {fmt(max(other, default=0), 'ms')}",
            )
        )
    idle = [x * 1000 for _, x in ticks[:200]]
    rows.append(("ticker lateness before any graph (p99)", fmt(percentile(idle, 0.99), "ms", 1)))
    alone = [x * 1000 for _, x in reads[:50]]
    rows.append(("other tenant's reads before any graph (p50)", fmt(percentile(alone, 0.5), "ms")))
    print_table("GET /v1/executions/{id}/graph served by the app (uvicorn, this process)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated")
    parser.add_argument("--no-server", action="store_true", help="only the in-process layouts")
    add_store_dir(parser)
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        raise SystemExit(f"unknown shapes {sorted(unknown)}: choose from {', '.join(SHAPES)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    layout_figures(shapes, args.repeat)
    if args.no_server:
        return
    folder = store_folder(args.store_dir)
    try:
        asyncio.run(served_figures(folder, shapes))
    finally:
        drop_store_folder(folder, args.store_dir)


if __name__ == "__main__":
    main()
