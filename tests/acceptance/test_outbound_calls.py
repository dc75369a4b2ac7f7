"""Outbound calls through a real ``trilha serve``, the way the findings were made: two
institutions' flows call one declared dependency (a real server on 127.0.0.1), and
neither a cookie nor a compression bomb crosses from one call into the process or into
the other institution's calls."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Api, Cli, start_api
from outbound_servers import RawServer, gzip_bomb, peak_rss, raw_server

MB = 1 << 20


def calling(flow_id: str, path: str) -> dict[str, Any]:
    """One call to the crm, no retries: 'ok' after it, 'sorry' when it fails."""
    return {
        "id": flow_id,
        "start": "call",
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "crm",
                "url": path,
                "saveAs": "reply",
                "retry": {"maxAttempts": 1},
                "fallback": {"next": "sorry"},
                "next": "ok",
            },
            {"id": "ok", "type": "end", "text": "ok"},
            {"id": "sorry", "type": "end", "text": "sorry"},
        ],
    }


def run(api: Api, key: str, institution: str, flow: dict[str, Any]) -> dict[str, Any]:
    """Publish ``flow`` as ``institution``, start it, wait for it to end; its steps."""
    with api.client(key) as client:
        assert client.put(f"/v1/flows/{flow['id']}", json=flow).status_code in (200, 201)
        body = {
            "flowId": flow["id"],
            "institutionId": institution,
            "conversationId": f"{institution}-{flow['id']}",
            "contactId": "k",
            "variables": {},
        }
        started = client.post("/v1/executions", json=body)
        assert started.status_code == 201, started.text
        execution = started.json()["executionId"]
        deadline = time.monotonic() + 20
        while client.get(f"/v1/executions/{execution}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the execution did not end"
            time.sleep(0.02)
        steps: list[dict[str, Any]] = client.get(f"/v1/executions/{execution}/steps").json()[
            "steps"
        ]
        return {"id": execution, "steps": steps}


@pytest.fixture(scope="module")
def crm() -> Iterator[RawServer]:
    with raw_server() as server:
        yield server


@pytest.fixture(scope="module")
def api(crm: RawServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One ``trilha serve`` for the module (keys and start-up cost seconds), with the crm
    declared for institutions acme and beta."""
    folder = tmp_path_factory.mktemp("outbound")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    runner = Cli(folder, {**env, "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    config = (
        '[channel]\nkind = "memory"\n\n'
        f'[dependencies.crm]\nbase_url = "{crm.url}"\ninstitutions = ["acme", "beta"]\n'
    )
    served = start_api(runner, folder, config=config)
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.process.kill()
        served.process.communicate(timeout=10)


def test_a_cookie_set_on_beta_s_call_is_not_sent_on_acme_s(api: Api, crm: RawServer) -> None:
    """The crm answers beta's call with Set-Cookie; acme's next call to it, in the same
    serving process, carries no Cookie header."""
    crm.answer("/login", body=b"{}", headers={"set-cookie": "session=beta-secret; Path=/"})
    crm.answer("/profile", body=b'{"name": "Ana"}')
    run(api, "beta_operator", "beta", calling("beta-login", "/login"))
    acme = run(api, "acme_operator", "acme", calling("acme-profile", "/profile"))
    assert [s["error"] for s in acme["steps"] if s["error"]] == []
    (profile,) = [r for r in crm.requests if r["path"] == "/profile"]
    assert crm.paths().count("/login") == 1
    headers = {k.lower() for k in profile["headers"]}
    assert "cookie" not in headers


def test_a_gzip_bomb_fails_the_node_with_kind_limit_and_memory_stays_small(
    api: Api, crm: RawServer
) -> None:
    """A 130 KB gzip body that inflates to 128 MB fails acme's node at once with kind
    limit; the serving process's memory grows by less than 50 MB meanwhile."""
    crm.answer("/small", body=b'{"ok": true}')
    crm.answer("/bomb", body=gzip_bomb(128 * MB), headers={"content-encoding": "gzip"})
    run(api, "acme_operator", "acme", calling("warm-up", "/small"))  # client made, pool warm
    started = time.monotonic()
    with peak_rss(api.process.pid) as growth:
        bombed = run(api, "acme_operator", "acme", calling("bombed", "/bomb"))
    took = time.monotonic() - started
    assert growth() < 50 * MB, f"trilha serve grew by {growth() / MB:.0f} MB"
    assert took < 5
    (error,) = [s["error"] for s in bombed["steps"] if s["error"]]
    assert error["type"] == "LimitExceeded" and error["details"]["kind"] == "limit"
