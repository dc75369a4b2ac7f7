"""Fault plans decide the same way every time, whatever the order they are asked in."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from trilha.chaos.contact import answer, think_seconds
from trilha.chaos.measure import FailingInputs
from trilha.chaos.scenarios import FLAKY_FAULTS, InputFailures, RandomFailures, matrix
from trilha.core.answers import Refused, check_answer
from trilha.core.faults import (
    Corruption,
    Delay,
    DependencyOutage,
    FaultPlan,
    Latency,
    ProcessorFaults,
    Window,
    chance,
)
from trilha.core.flow import AnswerRule, QuestionNode


def test_chance_is_a_fixed_uniform_number_per_question() -> None:
    keys = [("processor", f"ex-{i}", "n1", 1) for i in range(5_000)]
    first = [chance(7, *k) for k in keys]
    shuffled = list(keys)
    random.Random(1).shuffle(shuffled)
    again = {k: chance(7, *k) for k in shuffled}
    assert first == [again[k] for k in keys]  # the order asked in changes nothing
    assert all(0 <= x < 1 for x in first)
    assert 0.45 < sum(first) / len(first) < 0.55
    assert first != [chance(8, *k) for k in keys]  # another seed, other faults


def test_processor_failures_by_probability_and_first_calls() -> None:
    plan = FaultPlan(processor=ProcessorFaults(probability=0.2, first_calls=1))
    runs = [plan.processor_fails(1, f"ex-{i}", "n", "set", 2) for i in range(5_000)]
    assert 0.17 < sum(runs) / len(runs) < 0.23
    assert all(plan.processor_fails(1, f"ex-{i}", "n", "set", 1) for i in range(50))
    only_http = FaultPlan(processor=ProcessorFaults(probability=1.0, node_types=["http"]))
    assert not only_http.processor_fails(1, "ex", "n", "set", 5)
    assert only_http.processor_fails(1, "ex", "n", "http", 5)


def test_delays_by_kind_within_their_bounds() -> None:
    plan = FaultPlan(
        latency=Latency(
            dependency=Delay(probability=0.5, seconds=0.5, jitter_seconds=2.0),
        )
    )
    delays = [plan.delay(3, "dependency", f"ex-{i}", "n", 1) for i in range(2_000)]
    late = [d for d in delays if d]
    assert 0.45 < len(late) / len(delays) < 0.55
    assert all(0.5 <= d <= 2.5 for d in late)
    assert plan.delay(3, "store", "ex", 1) == 0.0  # no store delay in this plan


def test_corruption_targets_and_windows() -> None:
    plan = FaultPlan(corruption=Corruption(probability=0.3, targets=["variables", "checkpoint"]))
    picked = [plan.corrupts(5, f"ex-{i}") for i in range(3_000)]
    hit = [p for p in picked if p is not None]
    assert 0.27 < len(hit) / len(picked) < 0.33
    assert set(hit) == {"variables", "checkpoint"}
    outage = FaultPlan(
        store_outages=[Window(start_seconds=10, duration_seconds=5)],
        dependency_outages=[DependencyOutage(dependencies=["crm"])],
    )
    assert [outage.store_down(t) for t in (9.9, 10, 14.9, 15)] == [False, True, True, False]
    assert outage.store_back_at(12) == 15 and outage.store_back_at(20) is None
    assert outage.dependency_down("crm", 1e6) and not outage.dependency_down("score", 1)
    assert [outage.next_change(t) for t in (0, 10, 12, 15)] == [10, 15, 15, None]
    recurring = FaultPlan(
        store_outages=[Window(start_seconds=10, duration_seconds=2, every_seconds=30)]
    )
    downs = [t for t in range(100) if recurring.store_down(t)]
    assert downs == [10, 11, 40, 41, 70, 71]
    assert [recurring.next_change(t) for t in (5, 10.5, 12, 39)] == [10, 12, 40, 40]
    assert recurring.store_back_at(41.5) == 42
    with pytest.raises(ValidationError, match="shorter than every_seconds"):
        Window(start_seconds=0, duration_seconds=5, every_seconds=5)


def test_a_bad_plan_names_the_field() -> None:
    with pytest.raises(ValidationError, match="probability"):
        FaultPlan.model_validate({"processor": {"probability": 1.5}})
    with pytest.raises(ValidationError, match="each target at most once"):
        FaultPlan.model_validate({"corruption": {"targets": ["variables", "variables"]}})
    with pytest.raises(ValidationError, match="dependencies"):
        FaultPlan.model_validate({"dependencyOutages": [{"dependencies": []}]})


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "text", "minLength": 2, "maxLength": 80},
        {"kind": "number", "min": 1, "max": 3},
        {"kind": "email"},
        {"kind": "phone"},
        {"kind": "choice", "options": [{"value": "sim", "synonyms": ["s"]}, "não"]},
    ],
)
def test_the_simulated_contact_answers_what_the_question_accepts(rule: dict[str, object]) -> None:
    question = QuestionNode.model_validate(
        {"id": "q", "type": "question", "text": "?", "variable": "v", "validate": rule}
    )
    text = answer(question)
    assert not isinstance(check_answer(AnswerRule.model_validate(rule), text), Refused), text
    assert 1 <= think_seconds(1, "ex", "q", 1) <= 20


def test_input_failures_fail_the_same_requests_every_time() -> None:
    failures = InputFailures("crm", 1 / 3)
    paths = [f"/customers/{i}?full=1" for i in range(6_000)]
    first = [failures.fails(3, "GET", p) for p in paths]
    assert first == [failures.fails(3, "get", p) for p in paths]  # a retry never mends it
    assert 0.30 < sum(first) / len(first) < 0.37
    assert first != [failures.fails(4, "GET", p) for p in paths]  # another seed, others
    assert not any(InputFailures("crm", 0).fails(3, "GET", p) for p in paths)


def test_failing_inputs_judge_a_step_by_the_request_it_recorded() -> None:
    failures = InputFailures("crm", 0.5)
    inputs = FailingInputs(failures, 9, frozenset({"lookup"}))
    paths = [f"/customers/{i}" for i in range(200)]
    bad = next(p for p in paths if failures.fails(9, "GET", p))
    good = next(p for p in paths if not failures.fails(9, "GET", p))

    def error(request: object) -> dict[str, object]:
        return {"kind": "http_error", "details": {"request": request}}

    assert inputs.failed(error(f"GET http://127.0.0.1:9/{bad.lstrip('/')}"))
    assert not inputs.failed(error(f"GET http://127.0.0.1:9{good}"))
    # a step whose error names no request (a timeout before one went out, a bad
    # expression) is not one the dependency failed by input
    assert not inputs.failed(error(None))
    assert not inputs.failed(error("garbage"))
    assert not inputs.failed({"kind": "timeout"})


def test_random_failures_fail_a_share_of_calls_the_same_way_every_run() -> None:
    """Call n fails by the seed alone: a share near the asked one, each fault kind in
    about equal parts, the same calls in any order, another seed other calls."""
    flaky = RandomFailures("crm", 0.3)
    faults = [flaky.fault(1, n) for n in range(1, 20_001)]
    failed = [f for f in faults if f is not None]
    assert 0.28 < len(failed) / len(faults) < 0.32
    for kind in FLAKY_FAULTS:
        assert 0.3 < failed.count(kind) / len(failed) < 0.37
    assert [flaky.fault(1, n) for n in reversed(range(1, 20_001))] == faults[::-1]
    assert [flaky.fault(2, n) for n in range(1, 20_001)] != faults
    assert all(RandomFailures("crm", 0.0).fault(1, n) is None for n in range(1, 1_000))


def test_the_flaky_scenario_fails_the_dependency_called_with_an_input() -> None:
    (flaky,) = [s for s in matrix(["crm", "score"], "score") if s.name == "flaky_dependency"]
    assert flaky.random_failures == RandomFailures("score", 0.3)
    assert flaky.plan.model_dump() == type(flaky.plan)().model_dump()  # nothing else injected
    (none,) = [s for s in matrix([]) if s.name == "flaky_dependency"]
    assert none.random_failures is None
