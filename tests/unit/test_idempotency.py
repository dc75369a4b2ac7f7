"""The pure parts of issue 17 §1: which failed requests may be sent again, the ``ambiguous``
kind never being retried, the step's key, and the validation of the new settings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from trilha.config import DependencyConfig, load_config
from trilha.core.flow import RetryPolicy, load_flow
from trilha.core.policies import ErrorKind, GiveUp, classify, resend_is_safe, retry_decision
from trilha.errors import ConfigError, FlowValidationError
from trilha.processors.http import with_sys
from trilha.resilience.dependencies import (
    CALL_STARTED_KEY,
    IDEMPOTENCY_KEY,
    begin_call,
    call_ended,
    step_key,
)


@pytest.mark.parametrize(
    ("method", "idempotent", "unsafe", "expected"),
    [
        ("POST", False, False, False),
        ("PATCH", False, False, False),
        ("post", False, False, False),
        ("POST", True, False, True),
        ("PATCH", False, True, True),
        ("GET", False, False, True),
        ("PUT", False, False, True),
        ("DELETE", False, False, True),
        ("HEAD", False, False, True),
    ],
)
def test_which_lost_requests_may_be_sent_again(
    method: str, idempotent: bool, unsafe: bool, expected: bool
) -> None:
    assert resend_is_safe(method, dependency_idempotent=idempotent, retry_unsafe=unsafe) is expected


def test_ambiguous_is_a_kind_and_is_never_retried() -> None:
    assert classify("NodeError", kind="ambiguous") is ErrorKind.AMBIGUOUS
    policy = RetryPolicy(max_attempts=5)
    decision = retry_decision(policy, kind=ErrorKind.AMBIGUOUS, attempt=1, rng=random.Random(1))
    assert isinstance(decision, GiveUp) and "ambiguous" in decision.reason
    timeout = retry_decision(policy, kind=ErrorKind.TIMEOUT, attempt=1, rng=random.Random(1))
    assert not isinstance(timeout, GiveUp)


def test_the_step_key_is_the_first_attempts_step_and_then_kept() -> None:
    assert step_key("e1", 4, {}) == "e1:5"
    assert step_key("e1", 9, {IDEMPOTENCY_KEY: "e1:5", "other": 1}) == "e1:5"
    assert step_key("e1", 9, {IDEMPOTENCY_KEY: ""}) == "e1:10"


def test_sys_carries_the_key_over_a_flow_variable() -> None:
    variables = {"a": 1, "sys": {"idempotencyKey": "forged", "x": 2}}
    assert with_sys(variables, "e:1") == {"a": 1, "sys": {"idempotencyKey": "e:1", "x": 2}}
    assert with_sys({"sys": "text"}, "e:1") == {"sys": {"idempotencyKey": "e:1"}}
    assert with_sys(variables, None) is variables


def http_node(**extra: object) -> dict[str, object]:
    node = {"id": "call", "type": "http", "url": "https://api.example.com/x", "next": "end"}
    return {"id": "f", "start": "call", "nodes": [node | extra, {"id": "end", "type": "end"}]}


def test_retry_unsafe_is_for_post_and_patch() -> None:
    assert load_flow(http_node(method="POST", retryUnsafe=True)).nodes[0].retry_unsafe is True
    assert load_flow(http_node(method="PATCH", retryUnsafe=True)).nodes[0].retry_unsafe is True
    with pytest.raises(FlowValidationError) as err:
        load_flow(http_node(method="GET", retryUnsafe=True))
    assert "retryUnsafe" in str(err.value)
    with pytest.raises(FlowValidationError) as err:
        load_flow(http_node(method="POST", retryUnsafe="sometimes"))
    assert "retryUnsafe" in str(err.value)


def test_the_idempotency_settings_of_a_dependency() -> None:
    dep = DependencyConfig(base_url="https://crm.example.com")
    assert dep.idempotency_header == "Idempotency-Key" and dep.idempotent is False
    off = DependencyConfig(base_url="https://crm.example.com", idempotency_header="")
    assert off.idempotency_header == ""
    for bad in ("X Request Id", "X-Id:", "Idempotency-Key\r\nX-Evil: 1", "x" * 101):
        with pytest.raises(ValidationError) as err:
            DependencyConfig(base_url="https://crm.example.com", idempotency_header=bad)
        assert "idempotency_header" in str(err.value)


def test_an_attempt_begun_and_not_ended_reads_as_interrupted() -> None:
    """The mark ``begin_call`` leaves is only found again when the attempt never ended
    in its process (a crash): ``call_ended`` removes it, and a retry is a new attempt."""
    key, interrupted, state = begin_call("e1", 2, 0, {"x": 1})
    assert (key, interrupted) == ("e1:3", False)
    assert state == {"x": 1, IDEMPOTENCY_KEY: "e1:3", CALL_STARTED_KEY: 1}
    # the worker died during attempt 1: the one taking over runs attempt 1 again
    again = begin_call("e1", 2, 0, state)
    assert again[:2] == ("e1:3", True)
    # attempt 1 ended (it failed and a retry was scheduled, a later step): attempt 2
    retry = begin_call("e1", 3, 1, call_ended(state))
    assert retry[:2] == ("e1:3", False)
    # a wait for the dependency keeps the attempt count but not the mark
    assert begin_call("e1", 4, 1, call_ended(retry[2]))[:2] == ("e1:3", False)
    assert CALL_STARTED_KEY not in call_ended(state)


def test_a_bad_header_name_in_the_toml_is_named(tmp_path: Path) -> None:
    toml = tmp_path / "trilha.toml"
    toml.write_text(
        '[dependencies.bookings]\nbase_url = "https://b.example.com"\n'
        'idempotency_header = "X Request"\nidempotent = true\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(toml)
    assert "dependencies.bookings.idempotency_header" in str(err.value)
    assert "not a header name" in str(err.value)
    toml.write_text(
        '[dependencies.bookings]\nbase_url = "https://b.example.com"\n'
        'idempotency_header = ""\nidempotent = true\n',
        encoding="utf-8",
    )
    dep = load_config(toml).dependencies["bookings"]
    assert (dep.idempotency_header, dep.idempotent) == ("", True)
