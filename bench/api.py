"""The HTTP API under load: inbound message -> the bot's reply, over loopback.

    python bench/api.py [--conversations 50] [--seconds 20] [--workers 1] [--store-dir DIR]

Starts a real ``trilha serve`` (its own process, SQLite with ``synchronous=FULL``)
whose channel is a webhook to a receiver in this process, publishes an echo flow
(a question, then "You said: ..." and the question again), starts
``--conversations`` executions through ``POST /v1/executions`` and then keeps
each conversation busy: post the contact's message
(``POST /v1/conversations/{id}/messages``), wait for the bot's reply to arrive at
the webhook, post the next one. Prints the sustained rate of replies, the
latency from the POST to the reply's arrival (p50/p90/p99/max) and the API's own
answer time for the POST, and counts every non-2xx answer (there should be none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from _report import (
    add_store_dir,
    asgi_body,
    drop_store_folder,
    fmt,
    percentile,
    print_table,
    store_folder,
)

TRILHA = Path(sys.executable).parent / "trilha"
ECHO = {
    "id": "echo",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Say something",
            "variable": "said",
            "next": "reply",
        },
        {"id": "reply", "type": "message", "text": "You said: {{said}}", "next": "ask"},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """The platform's webhook: the bot's messages arrive here, per conversation."""

    def __init__(self) -> None:
        self.inboxes: dict[str, asyncio.Queue[tuple[float, str]]] = {}

    def inbox(self, conversation: str) -> asyncio.Queue[tuple[float, str]]:
        return self.inboxes.setdefault(conversation, asyncio.Queue())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await asgi_body(receive)
        arrived = time.perf_counter()
        data = json.loads(body)
        self.inbox(data["conversationId"]).put_nowait((arrived, data["text"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


#: how long a reply may take before the bench calls it lost
REPLY_TIMEOUT = 30.0


async def wait_reply(receiver: Receiver, conversation: str, prefix: str) -> float:
    """The arrival time of the next bot message starting with ``prefix``."""
    inbox = receiver.inbox(conversation)
    while True:
        arrived, text = await asyncio.wait_for(inbox.get(), REPLY_TIMEOUT)
        if text.startswith(prefix):
            return arrived


async def converse(
    client: httpx.AsyncClient,
    receiver: Receiver,
    conversation: str,
    until: float,
    latencies: list[float],
    answer_times: list[float],
    failures: list[str],
    institution: str = "bench",
) -> None:
    started = await client.post(
        "/v1/executions",
        json={
            "flowId": "echo",
            "institutionId": institution,
            "conversationId": conversation,
            "contactId": f"contact-{conversation}",
            "variables": {},
        },
    )
    if started.status_code != 201:
        failures.append(f"start {started.status_code}: {started.text[:200]}")
        return
    await wait_reply(receiver, conversation, "Say something")
    n = 0
    while time.perf_counter() < until:
        n += 1
        sent = time.perf_counter()
        answer = await client.post(
            f"/v1/conversations/{conversation}/messages",
            json={
                "messageId": f"{conversation}-{n}",
                "contactId": f"contact-{conversation}",
                "text": f"hello {n}",
            },
        )
        answered = time.perf_counter()
        if answer.status_code != 202:
            failures.append(f"message {answer.status_code}: {answer.text[:200]}")
            continue
        answer_times.append(answered - sent)
        arrived = await wait_reply(receiver, conversation, f"You said: hello {n}")
        latencies.append(arrived - sent)


def start_server(args: argparse.Namespace, folder: Path, hook_port: int) -> tuple[Any, str, str]:
    """``trilha serve`` on a free port with a webhook channel to ``hook_port``."""
    api_port = free_port()
    store = f"sqlite:///{folder / 'bench-api.db'}"
    (folder / "trilha.toml").write_text(
        f'[channel]\nkind = "webhook"\nurl = "http://127.0.0.1:{hook_port}/messages"\n'
        f"[api]\nrate_limit_per_second = 100000\nrate_limit_burst = 100000\n"
        f'[logging]\nlevel = "warn"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    made = subprocess.run(
        [str(TRILHA), "keys", "create", "--institution", "bench", "--store", store],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    server = subprocess.Popen(
        [str(TRILHA), "serve", "--port", str(api_port), "--store", store,
         "--workers", str(args.workers)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return server, f"http://127.0.0.1:{api_port}", key


async def run(args: argparse.Namespace, url: str, key: str, hook_port: int) -> dict[str, Any]:
    receiver = Receiver()
    hook = uvicorn.Server(
        uvicorn.Config(
            receiver, host="127.0.0.1", port=hook_port, log_config=None, access_log=False
        )
    )
    hook_task = asyncio.create_task(hook.serve())
    limits = httpx.Limits(max_connections=args.conversations + 10)
    latencies: list[float] = []
    answer_times: list[float] = []
    failures: list[str] = []
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits
        ) as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            published = await client.put("/v1/flows/echo", json=ECHO)
            published.raise_for_status()
            begin = time.perf_counter()
            until = begin + args.seconds
            await asyncio.gather(
                *(
                    converse(client, receiver, f"c{i}", until, latencies, answer_times, failures)
                    for i in range(args.conversations)
                )
            )
            elapsed = time.perf_counter() - begin
    finally:
        hook.should_exit = True
        await hook_task
    return {
        "latencies": latencies,
        "answers": answer_times,
        "failures": failures,
        "elapsed": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="worker loops in trilha serve")
    add_store_dir(parser)
    args = parser.parse_args()
    folder = store_folder(args.store_dir)
    try:
        print(
            f"{args.conversations} concurrent conversations for {args.seconds:g}s against"
            f" trilha serve (--workers {args.workers}), webhook channel, SQLite synchronous=FULL"
        )
        hook_port = free_port()
        server, url, key = start_server(args, folder, hook_port)
        try:
            result = asyncio.run(run(args, url, key, hook_port))
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=60)
        result["exit"], result["stderr"] = server.returncode, stderr
    finally:
        drop_store_folder(folder, args.store_dir)
    ms = [x * 1000 for x in result["latencies"]]
    answers = [x * 1000 for x in result["answers"]]
    print_table(
        "inbound message -> bot reply (at the webhook)",
        [
            ("replies", fmt(len(ms))),
            ("sustained replies/s", fmt(len(ms) / result["elapsed"], digits=1)),
            ("latency p50", fmt(percentile(ms, 0.5), "ms", 1)),
            ("latency p90", fmt(percentile(ms, 0.9), "ms", 1)),
            ("latency p99", fmt(percentile(ms, 0.99), "ms", 1)),
            ("latency max", fmt(max(ms, default=float("nan")), "ms", 1)),
            ("POST .../messages answered (202): p50", fmt(percentile(answers, 0.5), "ms", 1)),
            ("POST .../messages answered (202): p99", fmt(percentile(answers, 0.99), "ms", 1)),
            ("non-2xx answers", fmt(len(result["failures"]))),
            ("server exit code after SIGTERM", str(result["exit"])),
        ],
    )
    for failure in result["failures"][:5]:
        print("  ", failure)


if __name__ == "__main__":
    main()
