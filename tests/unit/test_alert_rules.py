"""The alert state machine (pure), the rules' configuration and the wire form of an
alert: what moves an alert between inactive, pending, firing and resolved, and
which of those moves are told to anyone."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.config import AlertRuleConfig, AlertsConfig, AlertWebhookConfig, Config, load_config
from trilha.core.alerts import (
    DEFAULT_RULES,
    AlertRule,
    AlertState,
    AlertStatus,
    Signal,
    advance,
    breached,
)
from trilha.engine.clock import FakeClock
from trilha.errors import ConfigError
from trilha.observability.alerts import (
    AlertEvaluator,
    _safe_url,
    alert_json,
    format_age,
    format_value,
    shown_states,
)

A = AlertStatus
T0 = 1_800_000_000.0
RATE = AlertRule("error_rate", "TrilhaErrorRateHigh", Signal.ERROR_RATE, 0.05, 300, 60, "critical")
QUEUE = AlertRule("queue_backlog", "TrilhaQueueBacklog", Signal.QUEUE_DUE, 100, 0, 0, "warning")


def run(
    rule: AlertRule, steps: list[tuple[float, float | None]]
) -> list[tuple[AlertState, AlertStatus | None]]:
    """Feed ``(seconds after T0, value)`` readings in order; every state and notification."""
    state: AlertState | None = None
    out = []
    for at, value in steps:
        state, notify = advance(rule, state, value, T0 + at)
        out.append((state, notify))
    return out


def test_the_defaults_are_design_section_5() -> None:
    """Error rate > 5 % over 5 min, a turn > 30 s, > 100 due, memory > 80 %; and (issue
    17) any dead message, at once."""
    by_key = {r.key: r for r in DEFAULT_RULES}
    assert set(by_key) == {"error_rate", "slow_turn", "queue_backlog", "memory", "dead_messages"}
    dead = by_key["dead_messages"]
    assert (dead.name, dead.signal, dead.threshold, dead.for_seconds) == (
        "TrilhaDeadMessages",
        Signal.DEAD_MESSAGES,
        0,
        0,
    )
    assert not breached(dead, 0) and breached(dead, 1)
    assert (by_key["error_rate"].threshold, by_key["error_rate"].window_seconds) == (0.05, 300)
    assert by_key["slow_turn"].threshold == 30
    assert by_key["queue_backlog"].threshold == 100
    assert by_key["memory"].threshold == 0.8


def test_a_breach_is_pending_until_it_lasts_for_seconds_then_fires_once() -> None:
    """Pending at the first breach (no word), firing once ``for_seconds`` have passed
    (one notification), and no repeat while it keeps firing."""
    states = run(RATE, [(0, 0.2), (30, 0.3), (59.9, 0.2), (60, 0.2), (90, 0.5)])
    assert [(s.status, n) for s, n in states] == [
        (A.PENDING, None),
        (A.PENDING, None),
        (A.PENDING, None),
        (A.FIRING, A.FIRING),
        (A.FIRING, None),
    ]
    fired = states[3][0]
    assert fired.active_at == T0 and fired.fired_at == T0 + 60
    assert states[-1][0].value == 0.5 and states[-1][0].fired_at == T0 + 60


def test_a_pending_alert_that_clears_goes_back_to_inactive_silently() -> None:
    """A blip shorter than ``for_seconds`` is nobody's business."""
    states = run(RATE, [(0, 0.2), (30, 0.01)])
    last, notify = states[-1]
    assert last.status is A.INACTIVE and notify is None
    assert last.active_at is None and last.fired_at is None


def test_a_firing_alert_resolves_with_a_notification_and_can_fire_again() -> None:
    """Resolved keeps when it fired and says when it resolved; a new breach starts a
    new pending period (a new ``active_at``), not an instant re-fire."""
    states = run(RATE, [(0, 0.2), (60, 0.2), (120, 0.0), (180, 0.01), (200, 0.3), (260, 0.3)])
    assert [(s.status, n) for s, n in states] == [
        (A.PENDING, None),
        (A.FIRING, A.FIRING),
        (A.RESOLVED, A.RESOLVED),
        (A.RESOLVED, None),
        (A.PENDING, None),
        (A.FIRING, A.FIRING),
    ]
    resolved = states[2][0]
    assert resolved.resolved_at == T0 + 120 and resolved.fired_at == T0 + 60
    assert resolved.active_at is None
    assert states[4][0].active_at == T0 + 200
    assert states[5][0].fired_at == T0 + 260


def test_for_zero_fires_at_the_first_breach() -> None:
    ((state, notify),) = run(QUEUE, [(0, 101)])
    assert state.status is A.FIRING and notify is A.FIRING


@pytest.mark.parametrize("value", [None, 100.0, 0.0])
def test_an_unknown_value_or_one_at_the_threshold_is_no_breach(value: float | None) -> None:
    """The threshold is a limit (``>``), and no data (``None``) is not an incident."""
    ((state, notify),) = run(QUEUE, [(0, value)])
    assert state.status is A.INACTIVE and notify is None


def test_an_unknown_value_resolves_a_firing_alert() -> None:
    """When the signal can no longer be judged (too few steps, say), the alert does not
    stay firing forever on stale data."""
    states = run(QUEUE, [(0, 500), (15, None)])
    assert states[-1][0].status is A.RESOLVED and states[-1][1] is A.RESOLVED


def test_the_summary_says_what_was_measured_against_what() -> None:
    state, _ = advance(RATE, None, 0.125, T0)
    assert state.summary == "step error rate 12.5% over 5m (threshold 5.0%)"
    state, _ = advance(QUEUE, None, 150, T0)
    assert state.summary == "executions due and unclaimed 150 (threshold 100)"


# --------------------------------------------------------------------------- a property

readings = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=120, allow_nan=False),
        st.one_of(st.none(), st.floats(min_value=0, max_value=1, allow_nan=False)),
    ),
    max_size=40,
)


@given(readings, st.sampled_from([0.0, 30.0, 60.0]))
def test_notifications_alternate_and_firing_needs_a_sustained_breach(
    steps: list[tuple[float, float | None]], for_seconds: float
) -> None:
    """Whatever the signal does: notifications alternate firing, resolved, firing...;
    the status is firing exactly when the last notification was a firing one; and a
    firing notification comes only after ``for_seconds`` of unbroken breach."""
    rule = replace(RATE, for_seconds=for_seconds)
    state: AlertState | None = None
    now = T0
    told: list[AlertStatus] = []
    breach_since: float | None = None
    for gap, value in steps:
        now += gap
        breached = value is not None and value > rule.threshold
        breach_since = (breach_since if breach_since is not None else now) if breached else None
        state, notify = advance(rule, state, value, now)
        if notify is not None:
            told.append(notify)
        if notify is A.FIRING:
            assert breach_since is not None and now - breach_since >= for_seconds
        assert (state.status is A.FIRING) == (bool(told) and told[-1] is A.FIRING)
        assert state.status in (A.PENDING, A.FIRING) or state.active_at is None
    assert all(a != b for a, b in pairwise(told))
    assert not told or told[0] is A.FIRING


# --------------------------------------------------------------------------- configuration


def test_the_configuration_changes_thresholds_windows_and_drops_disabled_rules() -> None:
    config = AlertsConfig(
        rules={
            "error_rate": AlertRuleConfig(threshold=0.1, window_seconds=60, min_events=5),
            "slow_turn": AlertRuleConfig(for_seconds=10, severity="critical"),
            "memory": AlertRuleConfig(enabled=False),
        }
    )
    rules = {r.key: r for r in config.active_rules()}
    assert set(rules) == {"error_rate", "slow_turn", "queue_backlog", "dead_messages"}
    assert (rules["error_rate"].threshold, rules["error_rate"].window_seconds) == (0.1, 60)
    assert rules["error_rate"].min_events == 5 and rules["error_rate"].for_seconds == 60
    assert rules["slow_turn"].for_seconds == 10 and rules["slow_turn"].severity == "critical"
    assert rules["queue_backlog"] == next(r for r in DEFAULT_RULES if r.key == "queue_backlog")


def test_trilha_toml_alerts_section(tmp_path: Path) -> None:
    """The keys as a user writes them, snake_case, with a webhook; an unknown rule is
    refused with the ones that exist."""
    good = tmp_path / "trilha.toml"
    good.write_text(
        "[alerts]\nevaluation_interval_seconds = 5\n"
        "[alerts.rules.queue_backlog]\nthreshold = 10\nfor_seconds = 0\n"
        '[alerts.webhook]\nurl = "http://127.0.0.1:9/hook"\nmax_attempts = 3\n'
        'headers = { Authorization = "Bearer ${HOOK_TOKEN}" }\n'
    )
    config = load_config(good)
    assert config.alerts.evaluation_interval_seconds == 5
    queue = next(r for r in config.alerts.active_rules() if r.key == "queue_backlog")
    assert (queue.threshold, queue.for_seconds) == (10, 0)
    assert config.alerts.webhook is not None and config.alerts.webhook.max_attempts == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("[alerts.rules.disk]\nthreshold = 1\n")
    with pytest.raises(ConfigError, match="unknown rule 'disk'"):
        load_config(bad)


def test_a_webhook_header_naming_a_missing_variable_fails_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The secret is read when the evaluator is made, so a worker with a broken alert
    configuration refuses to start instead of failing at the first alert."""
    monkeypatch.delenv("TRILHA_TEST_HOOK_TOKEN", raising=False)
    config = Config(
        alerts=AlertsConfig(
            webhook=AlertWebhookConfig(
                url="http://127.0.0.1:9/hook",
                headers={"Authorization": "Bearer ${TRILHA_TEST_HOOK_TOKEN}"},
            )
        )
    )
    with pytest.raises(ConfigError, match="TRILHA_TEST_HOOK_TOKEN"):
        AlertEvaluator(None, config, FakeClock())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the wire


def test_an_alert_on_the_wire_is_camel_case_iso_and_valid_json() -> None:
    state, _ = advance(QUEUE, None, 150, T0)
    body = alert_json(state)
    assert body == {
        "status": "firing",
        "rule": "TrilhaQueueBacklog",
        "instance": "",
        "severity": "warning",
        "value": 150,
        "threshold": 100,
        "summary": "executions due and unclaimed 150 (threshold 100)",
        "activeAt": "2027-01-15T08:00:00.000Z",
        "firedAt": "2027-01-15T08:00:00.000Z",
        "resolvedAt": None,
        "updatedAt": "2027-01-15T08:00:00.000Z",
    }
    orphan = replace(state, threshold=float("nan"), value=float("inf"))  # a history row
    assert json.loads(json.dumps(alert_json(orphan), allow_nan=False))["threshold"] is None


def test_values_ages_and_logged_urls_read_well() -> None:
    assert format_value("TrilhaErrorRateHigh", 0.0712) == "7.1%"
    assert format_value("TrilhaMemoryHigh", 0.8) == "80.0%"
    assert format_value("TrilhaTurnTooSlow", 41.25) == "41.2s"
    assert format_value("TrilhaQueueBacklog", 150.0) == "150"
    assert format_value("TrilhaQueueBacklog", None) == "-"
    assert [format_age(s) for s in (5, 90, 7_200, 200_000)] == [
        "5s ago",
        "1m ago",
        "2h ago",
        "2d ago",
    ]
    assert (
        _safe_url("https://user:pw@hooks.example.com:8443/alerts?token=abc")
        == "https://hooks.example.com:8443/alerts"
    )


def test_the_listing_shows_configured_rules_nothing_stored_yet() -> None:
    """A rule that never breached has no row; the listing still shows it, inactive."""
    stored, _ = advance(QUEUE, None, 150, T0)
    shown = shown_states([stored], DEFAULT_RULES, T0)
    assert [(s.rule, s.status) for s in shown] == [
        ("TrilhaDeadMessages", A.INACTIVE),
        ("TrilhaErrorRateHigh", A.INACTIVE),
        ("TrilhaMemoryHigh", A.INACTIVE),
        ("TrilhaQueueBacklog", A.FIRING),
        ("TrilhaTurnTooSlow", A.INACTIVE),
    ]
