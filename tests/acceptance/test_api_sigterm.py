"""SIGTERM while the API is under load: what was acknowledged survives, nothing is
done twice, and a restarted server finishes every conversation."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from conftest import Api, Cli, Drain, serve, start_api

TWO_QUESTIONS = {
    "id": "two",
    "start": "first",
    "nodes": [
        {"id": "first", "type": "question", "text": "First?", "variable": "a", "next": "second"},
        {"id": "second", "type": "question", "text": "Second?", "variable": "b", "next": "done"},
        {"id": "done", "type": "end", "text": "Got {{a}} and {{b}}."},
    ],
}
CONVERSATIONS = 40


async def _reply(client: httpx.AsyncClient, conversation: str, n: int) -> int | None:
    """Post the contact's n-th reply; the status, or None when the server was gone."""
    try:
        answer = await client.post(
            f"/v1/conversations/{conversation}/messages",
            json={"messageId": f"{conversation}-m{n}", "contactId": "k", "text": f"r{n}"},
        )
    except httpx.TransportError:
        return None
    return answer.status_code


async def _load(api: Api, stop_after: float) -> dict[str, list[int | None]]:
    """Every conversation answers both questions as fast as it can; SIGTERM lands
    ``stop_after`` seconds in."""
    results: dict[str, list[int | None]] = {}
    headers = {"Authorization": f"Bearer {api.keys['acme_operator']}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:

        async def converse(conversation: str) -> None:
            results[conversation] = [await _reply(client, conversation, n) for n in (1, 2)]

        async def terminate() -> None:
            await asyncio.sleep(stop_after)
            api.process.send_signal(signal.SIGTERM)

        await asyncio.gather(terminate(), *(converse(f"c{i}") for i in range(CONVERSATIONS)))
    return results


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_sigterm_under_load_loses_nothing(cli: Cli, tmp_path: Path) -> None:
    api = start_api(cli, tmp_path)
    with api.client() as acme:
        assert acme.put("/v1/flows/two", json=TWO_QUESTIONS).status_code == 201
        for i in range(CONVERSATIONS):
            started = acme.post(
                "/v1/executions",
                json={
                    "flowId": "two",
                    "institutionId": "acme",
                    "conversationId": f"c{i}",
                    "contactId": "k",
                    "variables": {},
                },
            )
            assert started.status_code == 201, started.text
    results = asyncio.run(_load(api, stop_after=0.3))
    code, output = api.stop(timeout=60)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    acknowledged = {
        f"{conv}-m{n}"
        for conv, codes in results.items()
        for n, status in zip((1, 2), codes, strict=True)
        if status == 202
    }
    assert acknowledged, "the load ended before anything was acknowledged"

    # restart on the same store; a platform re-sends what was not acknowledged (same ids)
    process, url = serve(cli, tmp_path, api.store)
    restarted = Api(url, process, api.store, api.keys, Drain(process))
    with restarted.client() as acme:
        for conv, codes in results.items():
            for n, status in zip((1, 2), codes, strict=True):
                if status != 202:
                    resent = acme.post(
                        f"/v1/conversations/{conv}/messages",
                        json={"messageId": f"{conv}-m{n}", "contactId": "k", "text": f"r{n}"},
                    )
                    assert resent.status_code == 202, resent.text
        deadline = time.monotonic() + 60
        while True:
            listed = acme.get("/v1/executions", params={"limit": 100}).json()
            statuses = {e["conversationId"]: e["status"] for e in listed["executions"]}
            if len(statuses) == CONVERSATIONS and set(statuses.values()) == {"completed"}:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.1)
        for e in listed["executions"]:
            assert e["variables"] == {"a": "r1", "b": "r2"}, e
            transcript = acme.get(f"/v1/executions/{e['executionId']}/transcript").json()
            said = [t["text"] for t in transcript["transcript"]]
            assert said == ["First?", "r1", "Second?", "r2", "Got r1 and r2."], said
    restarted.stop()
    db = Path(api.store.removeprefix("sqlite:///"))
    # every bot message once: one outbox row per (execution, step, index), none repeated
    duplicates = _rows(
        db,
        "SELECT execution_id, text, COUNT(*) FROM outbox GROUP BY execution_id, text"
        " HAVING COUNT(*) > 1",
    )
    assert duplicates == []
    # every acknowledged reply was kept and applied once
    applied = {r[0] for r in _rows(db, "SELECT message_id FROM inbox WHERE applied_at IS NOT NULL")}
    assert acknowledged <= applied
