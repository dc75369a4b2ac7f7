"""`trilha metrics-server` as a real process: workers plus /metrics on 127.0.0.1."""

from __future__ import annotations

import socket
import time
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_server_serves_every_metric(cli: Any) -> None:
    """GET /metrics on a running metrics-server returns every trilha metric name."""
    port = free_port()
    proc = cli.spawn(
        "metrics-server", "--port", str(port), "--store", f"sqlite:///{cli.cwd / 'm.db'}"
    )
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate(timeout=5)
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert response.status_code == 200
        text = response.text
        break
    assert text, "metrics-server did not answer in time"
    for name in NAMES:
        assert name in text, name
    assert 'trilha_executions{status="running"} 0.0' in text
    proc.kill()
    proc.communicate(timeout=10)


def test_metrics_server_listens_on_the_configured_address(cli: Any) -> None:
    """Without --host/--port, metrics-server serves /metrics on ``[metrics] listen``."""
    port = free_port()
    (cli.cwd / "trilha.toml").write_text(
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8"
    )
    proc = cli.spawn("metrics-server", "--store", f"sqlite:///{cli.cwd / 'm.db'}")
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, proc.communicate(timeout=5)
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "metrics-server did not answer in time"
            time.sleep(0.1)
    assert response.status_code == 200 and "trilha_queue_due" in response.text
    proc.kill()
    _, stderr = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/metrics" in stderr
