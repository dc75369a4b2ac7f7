"""Issue 22's incident, staged on a real ``trilha serve`` with the product defaults: the
CRM answers 500 for customer codes starting with 9 (a third of the contacts) and 200
for the rest, and sixty conversations arrive within six seconds. A partial failure
must stay partial: every good code is greeted by name, every bad one takes the node's
fallback, nobody is handed to a person, and the breaker never opens.

With the breaker as it was (five consecutive 500s open it, one probe) this test fails:
the bad codes' retries open it and most later good codes are sent down the fallback."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_store_outage import Lines  # tests/acceptance is on sys.path (rootdir mode)

from conftest import Api, Cli, start_api
from incident import (
    BAD_PREFIX,
    FALLBACK_TEXT,
    INCIDENT_FLOW,
    crm_stand_in,
    greeting,
    incident_toml,
)

pytestmark = pytest.mark.slow

CONVERSATIONS = 60
#: contacts arrive one every so often, not in one instant: the later ones meet whatever
#: the earlier ones' failures did to the breaker
ARRIVAL_SECONDS = 0.1
#: the API's own rate limit is not under test: sixty contacts and the polling fit in it
UNLIMITED_API = "\n[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n"


def codes() -> list[str]:
    """Sixty five-digit customer codes, every third one starting with 9."""
    return [f"{BAD_PREFIX if i % 3 == 0 else 1 + i % 8}{i:04d}" for i in range(CONVERSATIONS)]


async def converse(client: httpx.AsyncClient, code: str, after: float) -> str:
    """One contact, ``after`` seconds from now: the conversation starts, the contact
    sends its code; the execution id."""
    await asyncio.sleep(after)
    conversation = f"whatsapp:55119{code}"
    started = await client.post(
        "/v1/executions",
        json={"flowId": "incident", "conversationId": conversation, "contactId": f"c-{code}"},
    )
    assert started.status_code == 201, started.text
    sent = await client.post(
        f"/v1/conversations/{conversation}/messages",
        json={"messageId": f"m-{code}", "contactId": f"c-{code}", "text": code},
    )
    assert sent.status_code == 202, sent.text
    execution: str = started.json()["executionId"]
    return execution


async def settled(client: httpx.AsyncClient, execution: str, deadline: float) -> dict[str, Any]:
    """The execution once it has ended (failing the test at ``deadline``)."""
    while True:
        answer = await client.get(f"/v1/executions/{execution}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["status"] in ("completed", "failed", "cancelled", "timeout"):
            return body
        assert time.monotonic() < deadline, f"{execution} did not end: {body['status']}"
        await asyncio.sleep(0.1)


async def stage(api: Api, all_codes: list[str]) -> dict[str, dict[str, Any]]:
    """Every contact at once; per code, its ended execution, transcript and history."""
    headers = {"Authorization": f"Bearer {api.keys['acme_operator']}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
        executions = await asyncio.gather(
            *(converse(client, code, n * ARRIVAL_SECONDS) for n, code in enumerate(all_codes))
        )
        deadline = time.monotonic() + 60
        ended = await asyncio.gather(*(settled(client, e, deadline) for e in executions))
        out: dict[str, dict[str, Any]] = {}
        for code, execution, body in zip(all_codes, executions, ended, strict=True):
            transcript = (await client.get(f"/v1/executions/{execution}/transcript")).json()
            history = (await client.get(f"/v1/executions/{execution}/history")).json()
            out[code] = {
                "execution": body,
                "bot": [t["text"] for t in transcript["transcript"] if t["from"] == "bot"],
                "states": [t["to"] for t in history["history"]],
            }
        return out


def test_a_crm_failing_for_one_class_of_codes_fails_only_those(cli: Cli, tmp_path: Path) -> None:
    """Sixty concurrent conversations, a third with 9xxxx codes the CRM answers 500 to:
    every good code completes greeted by name, every bad one ends through the node's
    fallback after its retries, none is escalated, and the crm breaker never opens."""
    with crm_stand_in() as crm:
        api = start_api(cli, tmp_path, config=incident_toml(crm.url) + UNLIMITED_API, drain=False)
        output = Lines(api.process.stdout)  # sixty conversations' lines outgrow a pipe
        with api.client() as client:
            published = client.put("/v1/flows/incident", json=INCIDENT_FLOW)
            assert published.status_code in (200, 201), published.text
        all_codes = codes()
        results = asyncio.run(stage(api, all_codes))
        api.process.send_signal(signal.SIGTERM)
        assert api.process.wait(60) == 0
    deadline = time.monotonic() + 10
    while not any("api.stopped" in line for line in output.lines):
        assert time.monotonic() < deadline, "the server's last line was not read"
        time.sleep(0.02)

    bad = [c for c in all_codes if c.startswith(BAD_PREFIX)]
    good = [c for c in all_codes if not c.startswith(BAD_PREFIX)]
    assert len(bad) == CONVERSATIONS // 3
    for code in good:
        seen = results[code]
        assert seen["execution"]["status"] == "completed", (code, seen)
        assert seen["execution"]["outcome"] == "completed", (code, seen)
        assert seen["bot"][-1] == greeting(code), (code, seen["bot"])
        assert "fallback" not in seen["states"] and "degraded" not in seen["states"], seen
    for code in bad:
        seen = results[code]
        assert seen["execution"]["status"] == "completed", (code, seen)
        assert seen["execution"]["outcome"] == "completed", (code, seen)
        assert seen["bot"][-2:] == [FALLBACK_TEXT, "Goodbye."], (code, seen["bot"])
        assert "fallback" in seen["states"] and "degraded" not in seen["states"], seen
    # every good code reached the CRM once; every bad one was retried, never refused
    asked = Counter(crm.codes)
    assert {code: asked[code] for code in good} == dict.fromkeys(good, 1)
    assert all(asked[code] >= 2 for code in bad), asked
    assert not [line for line in output.lines if "breaker.opened" in line]
