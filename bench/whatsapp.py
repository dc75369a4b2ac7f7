"""The WhatsApp channel under load: Meta's webhook -> the bot's reply at the Graph API.

    python bench/whatsapp.py [--conversations 20] [--seconds 15] [--store-dir DIR]

Starts a real ``trilha serve`` (its own process, SQLite with ``synchronous=FULL``)
with ``[channel] kind = "whatsapp"`` whose ``api_base_url`` is a Graph API stand-in
in this process (it answers sends as Meta documents). Each contact writes "oi", which
starts the echo flow through the institution's default trigger; then each keeps
writing: a signed webhook POST (``X-Hub-Signature-256``) of a text message, and the
wait for the bot's ``You said: ...`` to reach the stand-in as a send to that contact.
Prints the replies per second, the latency from the webhook POST to the send's
arrival (p50/p90/p99/max), the webhook's own answer time and every non-200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
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
from api import ECHO, free_port

TRILHA = Path(sys.executable).parent / "trilha"
SECRET = "bench-app-secret"  # noqa: S105 (a stand-in's, on loopback)
NUMBER = "100200300"
REPLY_TIMEOUT = 30.0


class GraphStandIn:
    """The Graph API: every send is queued for the contact it goes to, and answered
    with a ``wamid`` as Meta answers."""

    def __init__(self) -> None:
        self.inboxes: dict[str, asyncio.Queue[tuple[float, str]]] = {}
        self.count = 0

    def inbox(self, wa_id: str) -> asyncio.Queue[tuple[float, str]]:
        return self.inboxes.setdefault(wa_id, asyncio.Queue())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = json.loads(await asgi_body(receive) or b"{}")
        arrived = time.perf_counter()
        if body.get("status") == "read":
            answer: dict[str, Any] = {"success": True}
        else:
            self.count += 1
            text = (body.get("text") or {}).get("body") or json.dumps(body)
            self.inbox(str(body.get("to"))).put_nowait((arrived, text))
            answer = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": f"wamid.bench{self.count}"}],
            }
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def webhook(wa_id: str, wamid: str, text: str) -> bytes:
    """A text message as Meta's webhook carries it."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5511900000000", "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "text": {"body": text},
                "type": "text",
            }
        ],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(body).encode()


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


async def wait_send(graph: GraphStandIn, wa_id: str, prefix: str) -> float:
    inbox = graph.inbox(wa_id)
    while True:
        arrived, text = await asyncio.wait_for(inbox.get(), REPLY_TIMEOUT)
        if text.startswith(prefix):
            return arrived


async def converse(
    client: httpx.AsyncClient,
    graph: GraphStandIn,
    wa_id: str,
    until: float,
    out: dict[str, list[Any]],
) -> None:
    body = webhook(wa_id, f"wamid.{wa_id}.0", "oi")
    first = await client.post("/v1/channels/whatsapp/webhook", content=body, headers=signed(body))
    if first.status_code != 200:
        out["failures"].append(f"webhook {first.status_code}: {first.text[:200]}")
        return
    await wait_send(graph, wa_id, "Say something")
    n = 0
    while time.perf_counter() < until:
        n += 1
        body = webhook(wa_id, f"wamid.{wa_id}.{n}", f"hello {n}")
        sent = time.perf_counter()
        answer = await client.post(
            "/v1/channels/whatsapp/webhook", content=body, headers=signed(body)
        )
        answered = time.perf_counter()
        if answer.status_code != 200:
            out["failures"].append(f"webhook {answer.status_code}: {answer.text[:200]}")
            continue
        out["answers"].append(answered - sent)
        arrived = await wait_send(graph, wa_id, f"You said: hello {n}")
        out["latencies"].append(arrived - sent)


def start_server(folder: Path, graph_port: int) -> tuple[Any, str, str]:
    api_port = free_port()
    store = f"sqlite:///{folder / 'bench-whatsapp.db'}"
    (folder / "trilha.toml").write_text(
        f"""
[channel]
kind = "whatsapp"
[channel.whatsapp]
access_token = "bench-token"
app_secret = "{SECRET}"
verify_token = "bench-verify"
api_base_url = "http://127.0.0.1:{graph_port}/v21.0"
messages_per_second = 1000
numbers = [{{ phone_number_id = "{NUMBER}", institution = "bench" }}]
[[triggers]]
institution = "bench"
default = true
flow_id = "echo"
[api]
rate_limit_per_second = 100000
rate_limit_burst = 100000
[logging]
level = "warn"
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    made = subprocess.run(
        [str(TRILHA), "keys", "create", "--institution", "bench", "--store", store],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    server = subprocess.Popen(
        [str(TRILHA), "serve", "--port", str(api_port), "--store", store],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return server, f"http://127.0.0.1:{api_port}", key


async def run(args: argparse.Namespace, url: str, key: str, graph_port: int) -> dict[str, Any]:
    graph = GraphStandIn()
    config = uvicorn.Config(
        graph, host="127.0.0.1", port=graph_port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    out: dict[str, list[Any]] = {"latencies": [], "answers": [], "failures": []}
    limits = httpx.Limits(max_connections=args.conversations + 10)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            auth = {"Authorization": f"Bearer {key}"}
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            (await client.put("/v1/flows/echo", json=ECHO, headers=auth)).raise_for_status()
            begin = time.perf_counter()
            until = begin + args.seconds
            await asyncio.gather(
                *(
                    converse(client, graph, f"55119{i:08d}", until, out)
                    for i in range(args.conversations)
                )
            )
            elapsed = time.perf_counter() - begin
    finally:
        server.should_exit = True
        await task
    return {**out, "elapsed": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    add_store_dir(parser)
    args = parser.parse_args()
    folder = store_folder(args.store_dir)
    try:
        print(
            f"{args.conversations} WhatsApp contacts for {args.seconds:g}s: signed webhook ->"
            " trilha serve -> Graph API stand-in, SQLite synchronous=FULL"
        )
        graph_port = free_port()
        server, url, key = start_server(folder, graph_port)
        try:
            result = asyncio.run(run(args, url, key, graph_port))
        finally:
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=60)
    finally:
        drop_store_folder(folder, args.store_dir)
    ms = [x * 1000 for x in result["latencies"]]
    answers = [x * 1000 for x in result["answers"]]
    print_table(
        "webhook POST -> the reply's send at the Graph API",
        [
            ("replies", fmt(len(ms))),
            ("replies/s", fmt(len(ms) / result["elapsed"], digits=1)),
            ("latency p50", fmt(percentile(ms, 0.5), "ms", 1)),
            ("latency p90", fmt(percentile(ms, 0.9), "ms", 1)),
            ("latency p99", fmt(percentile(ms, 0.99), "ms", 1)),
            ("latency max", fmt(max(ms, default=float("nan")), "ms", 1)),
            ("webhook answered (200): p50", fmt(percentile(answers, 0.5), "ms", 1)),
            ("webhook answered (200): p99", fmt(percentile(answers, 0.99), "ms", 1)),
            ("non-200 answers", fmt(len(result["failures"]))),
            ("server exit code after SIGTERM", str(server.returncode)),
        ],
    )
    for failure in result["failures"][:5]:
        print("  ", failure)
    if server.returncode not in (0, -signal.SIGTERM) and stderr:
        print(stderr[-2000:])


if __name__ == "__main__":
    main()
