"""The delivery rules, alone: a receipt moves the state only forward (failed above sent
only), the outbox's states as the transcript names them, and what counts as
undelivered."""

from __future__ import annotations

import pytest

from trilha.core.delivery import LATE_SECONDS, RECEIPT_STATUSES, advances, outbox_state, undelivered

ORDER = ["sent", "failed", "delivered", "read"]


def test_the_statuses_are_the_wires() -> None:
    assert set(RECEIPT_STATUSES) == set(ORDER)


@pytest.mark.parametrize("current", [None, *ORDER])
@pytest.mark.parametrize("status", ORDER)
def test_a_receipt_advances_only_to_a_further_state(current: str | None, status: str) -> None:
    further = current is None or ORDER.index(status) > ORDER.index(current)
    assert advances(current, status) is further


def test_an_unknown_status_never_advances() -> None:
    assert not advances(None, "seen")
    assert not advances("sent", "")


@pytest.mark.parametrize(
    ("status", "attempts", "shown"),
    [
        ("pending", 0, "queued"),
        ("pending", 2, "pending"),
        ("sent", 1, "sent"),
        ("dead", 10, "dead"),
    ],
)
def test_the_outbox_state_as_shown(status: str, attempts: int, shown: str) -> None:
    assert outbox_state(status, attempts) == shown


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "attempts", "age", "receipt", "expected"),
    [
        ("dead", 10, 60.0, None, True),
        ("dead", 10, 60.0, "delivered", False),  # the channel had it after all
        ("sent", 1, 60.0, "failed", True),
        ("sent", 1, 60.0, "read", False),
        ("sent", 1, 60.0, None, False),
        ("pending", 1, 1.0, None, True),  # a failed attempt: at once
        ("pending", 0, 1.0, None, False),  # just queued
        ("pending", 0, LATE_SECONDS + 1, None, True),  # nobody sent it in time
    ],
)
def test_what_counts_as_undelivered(
    status: str, attempts: int, age: float, receipt: str | None, expected: bool
) -> None:
    assert undelivered(status, attempts, NOW - age, receipt, now=NOW) is expected
