"""The API and its workers in separate processes on one PostgreSQL.

``trilha serve --workers 0`` answers the HTTP API; ``trilha worker`` processes
run the executions. A contact's reply stored by the API wakes a worker at once
(LISTEN/NOTIFY: the workers here poll only every 30 s, so a reply that waited
for a poll would take that long), and an execution's live event stream on the
API carries what a worker in another process did, in trail order, none
missing, none twice.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_events import Event, Stream, has, reply, start

from conftest import EXAMPLES, TRILHA, Api, Cli, start_api
from pgcluster import PgCluster, run_sync

pytestmark = pytest.mark.slow

#: workers that would sleep 30 s between polls: only a notification wakes them sooner
CONFIG = (
    '[channel]\nkind = "memory"\n\n[api]\nsse_ping_seconds = 0.5\n\n'
    "[engine]\npoll_interval_seconds = 30\n"
)


@pytest.fixture
def pg_url(postgres_cluster: PgCluster, cli: Cli) -> Iterator[str]:
    name = f"api_{random.randrange(1 << 30)}"
    postgres_cluster.create_database(name)
    url = postgres_cluster.url(name)
    migrated = cli("migrate", "--store", url)
    assert migrated.returncode == 0, migrated.stderr
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture
def served(cli: Cli, tmp_path: Path, pg_url: str) -> Iterator[Api]:
    """The API alone (no worker of its own) and two workers, each its own process."""
    api = start_api(
        cli, tmp_path, "--workers", "0", "--flows", str(EXAMPLES), config=CONFIG, store=pg_url
    )
    workers = [
        subprocess.Popen(
            [str(TRILHA), "worker", "--store", pg_url, "--config", str(tmp_path / "trilha.toml")],
            cwd=tmp_path,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    cli.spawned.extend(workers)
    yield api
    for worker in workers:
        worker.terminate()
        assert worker.wait(30) == 0, worker.stderr.read() if worker.stderr else ""


def received(events: list[Event]) -> list[Event]:
    return [e for e in events if e.data["message"] == "message.received"]


def trail_ids(url: str, execution_id: str, cluster: PgCluster) -> list[int]:
    async def read() -> list[int]:
        conn = await cluster.connect(url.rsplit("/", 1)[1])
        try:
            rows = await conn.fetch(
                "SELECT id FROM execution_logs WHERE execution_id = $1 ORDER BY id", execution_id
            )
            return [int(r[0]) for r in rows]
        finally:
            await conn.close()

    return run_sync(read())


def test_a_workers_steps_stream_live_from_the_api_process(
    served: Api, pg_url: str, postgres_cluster: PgCluster
) -> None:
    with served.client() as acme:
        eid = start(acme, "conv-pg")
        live = Stream(served, f"/v1/executions/{eid}/events")
        # the first turn ran in a worker process: started, asked, waiting
        live.until(has("execution.state_changed", to="waiting_input"), timeout=20)
        for n, answer in enumerate(("Maria Silva", "123.456.789-09"), 1):
            accepted = reply(acme, "conv-pg", answer)
            live.until(lambda events, n=n: len(received(events)) == n, timeout=20)
            # woken by the notification, not by a poll 30 s away
            latency = received(live.events)[-1].received_at - accepted
            assert latency < 10, latency
        live.until(has("message.queued", text="And your e-mail?"), timeout=20)
        time.sleep(0.5)  # what the worker writes after the question, if anything
        seen = live.ids
        live.close()
        assert seen == sorted(seen)
        stored = trail_ids(pg_url, eid, postgres_cluster)
        assert seen == stored[: len(seen)]  # in order, none missing, none twice
        assert len(seen) == len(stored)
