"""A booking made through an ``http`` node is applied once even when the worker making it
is killed (``kill -9``) mid-call (issue 17 §1): real ``trilha worker`` processes over a
SQLite file, and a real booking service on 127.0.0.1 counting the bookings it applies
per idempotency key.

The worker that takes the execution over finds that the call's attempt had begun (the
mark is committed before the request goes out). A service declaring ``idempotent =
true`` gets the POST again with the same key and applies it once; one that does not is
not asked again: the node takes its fallback with ``kind = "ambiguous"`` and the trail
says the booking may have been made.
"""

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
)

from effects_service import BookingService, booking_service

pytestmark = pytest.mark.slow

FLOW = {
    "id": "booking",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Booking {{slot}}...", "next": "book"},
        {
            "id": "book",
            "type": "http",
            "dependency": "bookings",
            "method": "POST",
            "url": "/bookings",
            "body": {"slot": "{{slot}}", "ref": "{{sys.idempotencyKey}}"},
            "saveAs": "booking",
            "fallback": {"next": "sorry"},
            "next": "done",
        },
        {"id": "done", "type": "end", "text": "Booked: {{booking.booking}}"},
        {"id": "sorry", "type": "end", "text": "We could not confirm your booking."},
    ],
}


def config(path: Path, url: str, *, idempotent: bool) -> Path:
    path.write_text(
        '[channel]\nkind = "memory"\n\n'
        f'[dependencies.bookings]\nbase_url = "{url}"\ntimeout_seconds = 20\n'
        f"idempotent = {'true' if idempotent else 'false'}\n",
        encoding="utf-8",
    )
    return path


def killed_mid_call(
    cli: Any, tmp_path: Path, service: BookingService, *, idempotent: bool
) -> tuple[str, str, dict[str, Any]]:
    """Run the booking in a worker, ``kill -9`` it while the service holds the answer,
    let a second worker take over; the store URL, the execution id and ``show``."""
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    toml = config(tmp_path / "trilha.toml", service.url, idempotent=idempotent)
    [eid] = create_executions(store, toml, [FLOW], [("booking", {"slot": "mon-10h"})])
    worker = ("worker", "--store", store, "--config", toml, "--lease-seconds", "1")

    first = cli.spawn(*worker)
    wait_for("the booking request", lambda: len(service.requests) >= 1)
    kill(first)  # the service applied the booking; its answer goes nowhere
    assert service.total_applied() == 1
    # the attempt was marked as begun before the request went out
    (state,) = query(db, "SELECT status, current_node_id FROM executions WHERE id = ?", eid)
    assert state == ("running", "book")

    second = cli(*worker, "--until-idle", timeout=40)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    return store, eid, show(cli, eid, store)


def test_an_idempotent_service_gets_the_booking_again_and_applies_it_once(
    cli: Any, tmp_path: Path
) -> None:
    with booking_service(script=["slow"], slow_seconds=3.0, dedupe=True) as service:
        _, eid, ex = killed_mid_call(cli, tmp_path, service, idempotent=True)
        assert service.total_applied() == 1
        requests = list(service.requests)
    assert len(requests) == 2
    key = f"{eid}:2"  # the step after the greeting, on both attempts
    assert [r["headers"]["idempotency-key"] for r in requests] == [key, key]
    assert [r["body"]["ref"] for r in requests] == [key, key]
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    bot = [t["text"] for t in ex["transcript"] if t["from"] == "bot"]
    assert bot == ["Booking mon-10h...", f"Booked: B-{key}"]
    check_history(ex["history"])


def test_a_service_without_idempotency_is_not_asked_twice(cli: Any, tmp_path: Path) -> None:
    with booking_service(script=["slow"], slow_seconds=3.0) as service:
        store, eid, ex = killed_mid_call(cli, tmp_path, service, idempotent=False)
        assert service.total_applied() == 1
        assert len(service.requests) == 1
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    bot = [t["text"] for t in ex["transcript"] if t["from"] == "bot"]
    assert bot == ["Booking mon-10h...", "We could not confirm your booking."]
    check_history(ex["history"])
    assert "fallback" in [h["to"] for h in ex["history"]]
    db = Path(store.removeprefix("sqlite:///"))
    rows = query(
        db,
        "SELECT level, context FROM execution_logs WHERE execution_id = ? AND message = ?",
        eid,
        "node.call_maybe_applied",
    )
    assert len(rows) == 1 and rows[0][0] == "WARN"
    assert f'"{eid}:2"' in rows[0][1] and '"interrupted"' in rows[0][1]
