"""``deploy/prometheus/alerts.yml``: valid for Prometheus (``promtool``), behaving as
its unit tests say, the same rules as the in-process ones, and naming only metrics
trilha really exports.

``promtool`` comes with Debian's ``prometheus`` package; ``.ci/run`` installs it
when missing. Without it these tests fail rather than skip: a rules file nobody
checked is the kind that silently never fires."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from trilha.core.alerts import DEFAULT_RULES
from trilha.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
#: a metric selector: name, then optional {label matchers}
SELECTOR = re.compile(r"\b(trilha_[a-z0-9_]+)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')
#: how each rule's threshold is written in PromQL (memory in percent there)
THRESHOLDS = {
    "TrilhaErrorRateHigh": "> 0.05",
    "TrilhaTurnTooSlow": 'le="30.0"',
    "TrilhaQueueBacklog": "> 100",
    "TrilhaMemoryHigh": "> 80",
    "TrilhaDeadMessages": "> 0",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    return path


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def seconds(duration: str | None) -> float:
    if not duration:
        return 0.0
    units = {"s": 1, "m": 60, "h": 3_600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", duration))


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_the_rules_fire_and_resolve_as_their_unit_tests_say() -> None:
    """alerts_test.yml feeds series shaped like trilha's and checks each alert fires
    (with its labels and summary) and resolves when it should."""
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_they_are_the_in_process_rules() -> None:
    """Same names, severities, ``for`` delays and thresholds as DEFAULT_RULES."""
    shipped = {rule["alert"]: rule for rule in rules()}
    assert set(shipped) == {rule.name for rule in DEFAULT_RULES}
    for rule in DEFAULT_RULES:
        promql = shipped[rule.name]
        assert promql["labels"]["severity"] == rule.severity, rule.name
        assert seconds(promql.get("for")) == rule.for_seconds, rule.name
        assert THRESHOLDS[rule.name] in promql["expr"], rule.name
        assert promql["annotations"]["summary"], rule.name
        if rule.window_seconds:
            assert f"[{int(rule.window_seconds // 60)}m]" in promql["expr"], rule.name
        if rule.min_events:
            assert f">= {rule.min_events}" in promql["expr"], rule.name


def exposition() -> dict[str, list[dict[str, str]]]:
    """trilha's real /metrics text, after recording one of everything the rules read,
    as sample name -> the label sets it has."""
    metrics = Metrics()
    metrics.node("http", ok=False)
    metrics.node("http", ok=True)
    metrics.turn("onboarding", 31.0)
    metrics.queue_due.set(3)
    metrics.outbox_dead.set(1)
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


@pytest.mark.parametrize("alert", [rule.name for rule in DEFAULT_RULES])
def test_every_metric_and_label_the_rules_name_is_exported(alert: str) -> None:
    """A misspelt metric or label value is not an error for Prometheus, just an alert
    that never fires; so every selector must match a sample trilha really exports."""
    (rule,) = [r for r in rules() if r["alert"] == alert]
    exported = exposition()
    selectors = SELECTOR.findall(rule["expr"])
    assert selectors, rule["expr"]
    for name, matchers in selectors:
        assert name in exported, f"{alert}: {name} is not in trilha's /metrics"
        for label, op, value in MATCHER.findall(matchers):
            assert op == "=", f"{alert}: only exact matchers are checked ({label}{op})"
            assert any(s.get(label) == value for s in exported[name]), (
                f'{alert}: no {name} sample has {label}="{value}"'
            )
