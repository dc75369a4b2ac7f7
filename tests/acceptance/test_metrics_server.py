"""`trilha metrics-server` as a real process: workers plus /metrics on 127.0.0.1."""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

#: a sample across the kinds (counter, histogram, store gauge, process gauge); the unit
#: tests check the full list against Metrics.render()
NAMES = [
    "trilha_node_executions_total",
    "trilha_turn_duration_seconds",
    "trilha_executions",
    "trilha_queue_due",
    "trilha_breaker_state",
    "trilha_process_resident_memory_bytes",
]


def free_port() -> int:
    """A port free now; closed again, so a server given it may find it taken (and is
    started again on another)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_url(proc: Any) -> str:
    """The address a metrics-server says it serves on (its stderr), once it listens."""
    said = ""
    for line in proc.stderr:
        said += line
        found = re.search(r"metrics at (http://\S+/metrics)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"metrics-server exited without serving:\n{said}")


def test_metrics_server_serves_every_metric(cli: Any) -> None:
    """GET /metrics on a running metrics-server returns every trilha metric name; on
    port 0 it takes a free port and says which."""
    proc = cli.spawn("metrics-server", "--port", "0", "--store", f"sqlite:///{cli.cwd / 'm.db'}")
    url = metrics_url(proc)
    assert not url.endswith(":0/metrics")
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    text = response.text
    for name in NAMES:
        assert name in text, name
    assert 'trilha_executions{status="running"} 0.0' in text
    proc.kill()
    proc.communicate(timeout=10)


def test_metrics_server_listens_on_the_configured_address(cli: Any) -> None:
    """Without --host/--port, metrics-server serves /metrics on ``[metrics] listen``."""
    for _ in range(5):  # a port picked free may be taken before the server binds it
        port = free_port()
        (cli.cwd / "trilha.toml").write_text(
            f'[metrics]\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8"
        )
        proc = cli.spawn("metrics-server", "--store", f"sqlite:///{cli.cwd / 'm.db'}")
        try:
            url = metrics_url(proc)
            break
        except AssertionError as exc:
            if "address already in use" not in str(exc).lower():
                raise
    else:
        raise AssertionError("metrics-server found no free port in 5 tries")
    assert url == f"http://127.0.0.1:{port}/metrics"  # the configured address
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and "trilha_queue_due" in response.text
    proc.kill()
    proc.communicate(timeout=10)
