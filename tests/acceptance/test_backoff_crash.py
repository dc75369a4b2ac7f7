"""A retry backoff is durable: SIGKILL the worker while an execution waits to retry, and a
new worker process retries on time with the attempt count intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_crash_safety import (
    check_history,
    create_executions,
    kill,
    query,
    show,
    wait_for,
    write_config,
)

FLOW = {
    "id": "flaky",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "One moment...", "next": "lookup"},
        {
            "id": "lookup",
            "type": "http",
            "dependency": "slow",
            "url": "/data",
            "saveAs": "data",
            "retry": {"maxAttempts": 5, "initialIntervalSeconds": 1.5, "jitter": False},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "Got {{data.value}}."},
    ],
}


@pytest.mark.slow
def test_worker_killed_during_a_backoff(cli: Any, tmp_path: Path, http_server: Any) -> None:
    """Killed while recovering: the new worker keeps the attempt count and the timer, the
    dependency is called once per attempt, and the contact hears each message once."""
    http_server.route("GET", "/data", body={"value": 7})
    http_server.fail_first("GET", "/data", 2, status=503)
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    config = write_config(tmp_path / "trilha.toml", dependency_url=http_server.url)
    (eid,) = create_executions(store, config, [FLOW], [("flaky", {})])

    first = cli.spawn("worker", "--store", store, "--config", config, "--lease-seconds", "1")
    backoff = "SELECT status, attempts, due_at, step_seq FROM executions WHERE id = ?"
    seen: list[tuple[Any, ...]] = []

    def first_attempt_failed() -> bool:
        seen[:] = query(db, backoff, eid)
        return seen[0][:2] == ("recovering", 1)

    wait_for("the first failed attempt", first_attempt_failed)
    kill(first)
    # read before the kill, unchanged after it: the backoff timer is in the store and
    # the killed worker did not get to retry (no clock reading that a slow machine delays)
    assert seen[0][2] is not None
    assert query(db, backoff, eid) == seen, "the killed worker retried before it died"
    assert http_server.count("GET", "/data") == 1

    second = cli.spawn("worker", "--store", store, "--config", config, "--lease-seconds", "1")
    wait_for(
        "completion",
        lambda: query(db, "SELECT status FROM executions WHERE id = ?", eid) == [("completed",)],
        timeout=30,
    )
    kill(second)

    assert http_server.count("GET", "/data") == 3
    attempts = query(
        db,
        "SELECT attempt, error IS NOT NULL FROM checkpoints"
        " WHERE execution_id = ? AND node_id = 'lookup' ORDER BY seq",
        eid,
    )
    assert attempts == [(1, 1), (2, 1), (3, 0)]
    data = show(cli, eid, store)
    check_history(data["history"])
    assert [h["to"] for h in data["history"]].count("recovering") == 2
    assert [t["text"] for t in data["transcript"]] == ["One moment...", "Got 7."]
