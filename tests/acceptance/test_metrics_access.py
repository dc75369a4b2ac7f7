"""``/metrics`` of a real ``trilha serve`` is not public (issue 14, finding 13): it answers
an admin key only, or only on ``[metrics] listen``; flow labels are bounded."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADDRESS_IN_USE, PORT_TRIES, Cli, free_port, start_api

pytestmark = pytest.mark.slow

MEMORY = '[channel]\nkind = "memory"\n'


def flow(name: str) -> dict[str, object]:
    return {"id": name, "start": "a", "nodes": [{"id": "a", "type": "end", "text": "bye"}]}


def turns_by_flow(text: str) -> dict[str, float]:
    """``trilha_turn_duration_seconds_count`` by its ``flow_id`` label."""
    return {
        sample.labels["flow_id"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "trilha_turn_duration_seconds_count"
    }


def test_metrics_answer_an_admin_key_only_and_fold_flow_labels(cli: Cli, tmp_path: Path) -> None:
    """Without a key /metrics is 401, with a tenant's key 403, with an admin's 200; an
    institution's flows beyond ``top_flows`` are counted under 'other'."""
    api = start_api(cli, tmp_path, config=MEMORY + "\n[metrics]\ntop_flows = 2\n")
    with httpx.Client(base_url=api.url) as anonymous:
        unauthorized = anonymous.get("/metrics")
        assert unauthorized.status_code == 401
        assert unauthorized.headers["www-authenticate"].startswith("Bearer")
        assert "trilha_" not in unauthorized.text
    for tenant in ("acme_viewer", "acme_operator", "beta_operator"):
        with api.client(tenant) as client:
            refused = client.get("/metrics")
            assert refused.status_code == 403, refused.text
            assert refused.json()["type"] == "urn:trilha:problem:forbidden"
            assert "admin key" in refused.json()["detail"]
    with api.client("acme_operator") as acme:
        for i in range(4):  # an institution publishing flows without end
            assert acme.put(f"/v1/flows/f{i}", json=flow(f"f{i}")).status_code == 201
            started = acme.post(
                "/v1/executions",
                json={"flowId": f"f{i}", "conversationId": f"c{i}", "contactId": "k"},
            )
            assert started.status_code == 201, started.text
    with api.client("admin") as admin:
        deadline = time.monotonic() + 10
        while True:
            scraped = admin.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            turns = turns_by_flow(scraped.text)
            if sum(turns.values()) >= 4:
                break
            assert time.monotonic() < deadline, turns
            time.sleep(0.1)
    assert len(turns) == 3 and turns["other"] == 2, turns
    assert all(name.startswith("acme/f") for name in turns if name != "other"), turns


def test_metrics_listen_serves_them_there_without_a_key_and_not_on_the_api(
    cli: Cli, tmp_path: Path
) -> None:
    """With ``[metrics] listen``, /metrics answers there without a key, and the API's
    address answers 404 even to an admin key."""
    for _ in range(PORT_TRIES):  # a port picked free may be taken before serve binds it
        port = free_port()
        config = f'{MEMORY}\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        try:
            api = start_api(cli, tmp_path, config=config)
            break
        except AssertionError as exc:
            if ADDRESS_IN_USE not in str(exc).lower():
                raise
    else:
        raise AssertionError(f"no free port for [metrics] listen in {PORT_TRIES} tries")
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scraped.status_code == 200 and "trilha_queue_due" in scraped.text
    with api.client("admin") as admin:
        absent = admin.get("/metrics")
        assert absent.status_code == 404
        assert "[metrics] listen" in absent.json()["detail"]
        assert str(port) not in absent.text
    code, output = api.stop()
    assert code == 0, output
    assert f"http://127.0.0.1:{port}/metrics" in output  # the log says where


def test_a_bad_metrics_listen_address_is_refused_by_name(cli: Cli, tmp_path: Path) -> None:
    """``[metrics] listen`` that is not HOST:PORT stops ``trilha serve`` with an error
    naming the setting."""
    (tmp_path / "trilha.toml").write_text('[metrics]\nlisten = "9464"\n', encoding="utf-8")
    answer = cli("serve", "--port", "0", "--store", f"sqlite:///{tmp_path / 'x.db'}")
    assert answer.returncode != 0
    assert "metrics.listen" in answer.stderr and "HOST:PORT" in answer.stderr
