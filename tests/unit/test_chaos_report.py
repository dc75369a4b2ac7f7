"""``trilha chaos``'s report: report.json as given, report.html self-contained and escaped,
charts per scenario, missing parts dropped, and the recovery histogram's buckets."""

from __future__ import annotations

import copy
import html
import json
import math
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from trilha.chaos.report import MAX_CHART_BUCKETS, histogram, render_html, write_report

EDGES = [0.5, 1, 2, 5, 10, 30, 60]
STATES = ["running", "waiting_input", "waiting_delay", "recovering", "completed", "failed"]
SCENARIOS = [
    "processor_failures",
    "store_latency",
    "worker_crash",
    "lease_expiry",
    "duplicate_delivery",
    "slow_channel",
    "breaker_storm",
    "clock_skew",
    "mixed",
]
CRITERIA = [
    (1, "transient errors recovered without a person", ">= 90 %", ">= 99.9 %"),
    (2, "no execution lost or duplicated", "100 %", "100 %"),
    (3, "recovery time p99", "<= 30 s", "<= 5 s"),
    (4, "outbox delivered exactly once", "100 %", "100 %"),
    (5, "state invariants hold", "0 violations", "0 violations"),
    (6, "throughput under faults", ">= 50 %", ">= 80 %"),
]
HOSTILE = "<script>alert('x')</script>"


def make_scenario(index: int, name: str, rng: random.Random) -> dict[str, Any]:
    """A scenario as the runner writes it: 100 equal timeline buckets, recoveries, faults."""
    executions = 200
    bucket = 5.0
    waiting = executions
    done = 0
    timeline = []
    for i in range(100):
        finished = min(waiting, rng.randint(0, 4))
        waiting -= finished
        done += finished
        timeline.append(
            {
                "t": i * bucket,
                "states": {
                    "running": min(waiting, rng.randint(0, 12)),
                    "waiting_input": waiting,
                    "waiting_delay": 0,
                    "recovering": rng.randint(0, 3) if name != "store_latency" else 0,
                    "completed": done,
                    "failed": 0,
                },
                "completedInBucket": finished,
            }
        )
    recoveries = [rng.expovariate(0.8) for _ in range(57)]
    scenario: dict[str, Any] = {
        "name": name,
        "description": f"Fault injection number {index}: ação e reação under load.",
        "simulated": index % 2 == 0,
        "executions": executions,
        "wallSeconds": 2.1 + index,
        "simulatedSeconds": 512.0,
        "outcomes": {
            "completed": 198,
            "failed": 1,
            "escalated": 1,
            "cancelled": 0,
            "timeout": 0,
            "unfinished": 0,
        },
        "faults": {"processor_failure": 57, "latency": 12, "worker_crash": 0},
        "criteria": {
            str(cid): {
                "measured": 0.99,
                "display": "99 %",
                "verdict": "pass" if cid % 2 else "target",
                "detail": f"criterion {cid} in {name}",
            }
            for cid in range(1, 7)
        },
        "recoverySeconds": {
            "count": len(recoveries),
            "p50": 1.1,
            "p99": 3.4,
            "max": 4.0,
            "histogram": histogram(recoveries, EDGES),
        },
        "timeline": timeline,
        "violations": [],
    }
    return scenario


def make_report() -> dict[str, Any]:
    """Nine scenarios; criterion 4 fails overall, in ``duplicate_delivery``."""
    rng = random.Random(7)
    scenarios = [make_scenario(i, name, rng) for i, name in enumerate(SCENARIOS, start=1)]
    bad = scenarios[SCENARIOS.index("duplicate_delivery")]
    bad["criteria"]["4"] = {
        "measured": 0.995,
        "display": "99.5 %",
        "verdict": "fail",
        "detail": "1 of 200 outbox messages sent twice",
    }
    bad["violations"] = [
        {
            "executionId": "ex-0001",
            "rule": "outbox",
            "detail": f"message sent twice: {HOSTILE}",
            "severity": "error",
        },
        {
            "executionId": "ex-0002",
            "rule": "lease",
            "detail": "late heartbeat",
            "severity": "warning",
        },
    ]
    bad["failingSeed"] = 7
    scenarios[0]["description"] = f"Processors raise {HOSTILE} & time out"
    criteria = [
        {
            "id": cid,
            "name": name,
            "required": required,
            "target": target,
            "measured": 0.9987,
            "display": "99.87 %",
            "verdict": "fail" if cid == 4 else "pass" if cid in (1, 6) else "target",
            "detail": f"1,234 of 1,236 for criterion {cid}",
        }
        for cid, name, required, target in CRITERIA
    ]
    return {
        "trilha": "0.1.0",
        "seed": 7,
        "startedAt": "2026-11-27T08:00:00Z",
        "wallSeconds": 12.3,
        "settings": {
            "executions": 200,
            "concurrency": 50,
            "store": "sqlite:///tmp/chaos/trilha.db",
            "flows": "built-in",
            "config": None,
            "scenarios": SCENARIOS,
        },
        "passed": False,
        "criteria": criteria,
        "scenarios": scenarios,
    }


class _Balance(HTMLParser):
    """Checks that every opened element is closed, in order (void elements aside)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.seen: dict[str, int] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen[tag] = self.seen.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen[tag] = self.seen.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
            return
        self.stack.pop()


def balance(page: str) -> _Balance:
    parser = _Balance()
    parser.feed(page)
    parser.close()
    return parser


def sections(page: str) -> list[str]:
    """Each scenario's section of the page, in order."""
    return re.findall(r'<section class="scenario".*?\n</section>', page, flags=re.DOTALL)


@pytest.fixture
def report() -> dict[str, Any]:
    return make_report()


def test_write_report_writes_both_files(report: dict[str, Any], tmp_path: Path) -> None:
    """Both files land in the folder, which is created with its parents."""
    folder = tmp_path / "runs" / "seed-7"
    json_path, html_path = write_report(report, folder)
    assert (json_path, html_path) == (folder / "report.json", folder / "report.html")
    assert json_path.is_file() and html_path.is_file()
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_json_round_trips_with_keys_as_given(report: dict[str, Any], tmp_path: Path) -> None:
    """report.json reads back equal, keys in the given order, indented, UTF-8 unescaped."""
    original = copy.deepcopy(report)
    json_path, _ = write_report(report, tmp_path)
    text = json_path.read_text(encoding="utf-8")
    loaded = json.loads(text)
    assert loaded == original
    assert list(loaded) == list(original)
    assert list(loaded["scenarios"][0]) == list(original["scenarios"][0])
    assert text.splitlines()[1].startswith('  "trilha"')
    assert "ação" in text
    assert report == original  # the input is not touched


def test_html_has_no_external_references(report: dict[str, Any]) -> None:
    """Nothing to fetch: the page opens offline exactly as it was written."""
    page = render_html(report)
    for needle in ("http://", "https://", "<script", "<link", "src=", "url(", "@import", "//cdn"):
        assert needle not in page.lower(), needle


def test_hostile_text_is_escaped(report: dict[str, Any]) -> None:
    """A ``<script>`` in a description or a violation detail is shown, never run."""
    page = render_html(report)
    assert "<script" not in page
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert f"Processors raise {escaped} &amp; time out" in page
    assert f"message sent twice: {escaped}" in page


def test_hostile_names_are_escaped_everywhere(report: dict[str, Any]) -> None:
    """A scenario name, a fault kind or a setting with markup stays text, even in SVG titles."""
    report["scenarios"][1]["name"] = '<b onclick="x">s</b>'
    report["scenarios"][1]["faults"] = {"<i>kind</i>": 3}
    report["scenarios"][1]["timeline"][0]["states"]["<u>new</u>"] = 1
    report["settings"]["flows"] = "<em>flows</em>"
    page = render_html(report)
    for raw in ("<b ", "<i>", "<u>", "<em>"):
        assert raw not in page
    assert "&lt;b onclick=&quot;x&quot;&gt;s&lt;/b&gt;" in page
    assert not balance(page).errors


def test_overall_verdict_and_each_criterion_verdict_shown(report: dict[str, Any]) -> None:
    """The big verdict, and every criterion's verdict as symbol and word, not colour alone."""
    page = render_html(report)
    assert '<p class="big" id="verdict"><span aria-hidden="true">✗</span> FAIL</p>' in page
    table = page.split('id="criteria-h"', 1)[1].split("</section>", 1)[0]
    rows = table.split("<tr>")[2:]  # after the header row
    assert len(rows) == 6
    symbols = {"pass": "✓", "target": "★", "fail": "✗"}
    for row, criterion in zip(rows, report["criteria"], strict=True):
        verdict = criterion["verdict"]
        assert f'class="verdict v-{verdict}"' in row
        assert f'<span aria-hidden="true">{symbols[verdict]}</span> {verdict}</span>' in row
        assert criterion["display"] in row
        assert criterion["name"] in row
        assert html.escape(criterion["required"]) in row


def test_passing_report_says_pass(report: dict[str, Any]) -> None:
    """A run that passed says PASS and names no failing scenario."""
    report["passed"] = True
    report["criteria"][3]["verdict"] = "target"
    bad = report["scenarios"][SCENARIOS.index("duplicate_delivery")]
    bad["criteria"]["4"]["verdict"] = "pass"
    del bad["failingSeed"]
    page = render_html(report)
    assert "</span> PASS</p>" in page
    assert "Failing scenarios" not in page


def test_failing_scenario_shows_its_seed(report: dict[str, Any]) -> None:
    """The failing scenario names its seed in the summary and in its own section."""
    page = render_html(report)
    assert "Failing scenarios: duplicate_delivery (seed <code>7</code>)" in page
    section = sections(page)[SCENARIOS.index("duplicate_delivery")]
    assert "the failing seed is <code>7</code>" in section
    assert "<code>ex-0001</code>" in section and "<code>ex-0002</code>" in section


def test_one_svg_per_chart_per_scenario(report: dict[str, Any]) -> None:
    """Three charts in each of the nine scenarios, each with a title for screen readers."""
    page = render_html(report)
    found = sections(page)
    assert len(found) == 9
    for section in found:
        assert section.count("<svg") == 3
        assert section.count('role="img"') == 3
        assert section.count("<title id=") == 3
        assert section.count('class="legend"') == 1
    assert page.count("<svg") == 27


def test_state_chart_draws_only_states_ever_non_zero(report: dict[str, Any]) -> None:
    """waiting_delay and failed stay at zero throughout, so they get no line."""
    section = sections(render_html(report))[0]
    legend = section.split('class="legend"', 1)[1].split("</ul>", 1)[0]
    assert "running" in legend and "completed" in legend
    assert "waiting_delay" not in legend and "failed" not in legend
    assert section.count("<polyline") == 4


def test_recovery_chart_labels_buckets_and_counts(report: dict[str, Any]) -> None:
    """Each bucket is labelled by its edge, the overflow one by the last edge."""
    section = sections(render_html(report))[0]
    chart = section.split("<svg", 2)[1]
    for label in ("≤0.5", "≤1", "≤60", "&gt;60"):
        assert f">{label}</text>" in chart
    counts = [b["count"] for b in report["scenarios"][0]["recoverySeconds"]["histogram"]]
    for n in counts:
        if n:
            assert f'text-anchor="middle">{n}</text>' in chart
    assert "recovery time (seconds)" in chart


def test_html_is_balanced(report: dict[str, Any]) -> None:
    """Every element that opens closes, in order; tables and charts pair up."""
    page = render_html(report)
    parser = balance(page)
    assert parser.errors == []
    assert parser.stack == []
    assert parser.seen["svg"] == 27
    assert page.count("<table") == page.count("</table>")
    assert page.count("<svg") == page.count("</svg>")


def test_light_and_dark(report: dict[str, Any]) -> None:
    """The palette follows the reader's colour scheme."""
    page = render_html(report)
    assert "@media (prefers-color-scheme: dark)" in page
    assert "color-scheme: light dark" in page


def test_size_stays_small(report: dict[str, Any]) -> None:
    """Nine scenarios of 100 buckets each stay well under a megabyte."""
    assert len(render_html(report).encode()) < 400_000


def test_long_timeline_is_merged_for_drawing(report: dict[str, Any]) -> None:
    """A 5,000-bucket timeline is drawn with at most MAX_CHART_BUCKETS points per line."""
    scenario = report["scenarios"][0]
    scenario["timeline"] = [
        {"t": i * 0.1, "states": {"running": i % 7}, "completedInBucket": 1} for i in range(5000)
    ]
    section = sections(render_html(report))[0]
    points = re.search(r'<polyline class="line" points="([^"]*)"', section)
    assert points is not None
    assert len(points.group(1).split()) <= MAX_CHART_BUCKETS
    assert "buckets merged" in section
    assert "5,000 completed" in section  # the merged bars still add up


def test_missing_optional_parts_drop_their_sections(report: dict[str, Any]) -> None:
    """No timeline, recoveries or violations, a criterion missing or unmeasured: no failure."""
    scenario = report["scenarios"][0]
    for key in ("timeline", "recoverySeconds", "violations", "faults", "description"):
        scenario.pop(key)
    del scenario["criteria"]["6"]
    scenario["criteria"]["1"] = {"measured": None, "display": "n/a", "verdict": None}
    report["criteria"][0].update(measured=None, display="n/a", verdict=None)
    del report["criteria"][2]["display"]  # falls back to the measured figure
    page = render_html(report)
    first = sections(page)[0]
    assert "<svg" not in first
    assert "Faults injected" not in first and "Violations" not in first
    assert "<h3>Outcomes</h3>" in first
    assert '<span class="verdict v-none"' in first and "n/a" in first
    assert "99.87 %" in page
    assert page.count("<svg") == 24
    assert not balance(page).errors


def test_odd_values_do_not_break_rendering(report: dict[str, Any]) -> None:
    """Wrong types and non-finite numbers render as dashes, not as exceptions."""
    scenario = report["scenarios"][0]
    scenario["outcomes"] = {"completed": "many", "failed": math.nan}
    scenario["recoverySeconds"] = {"count": 0, "histogram": [{"le": None, "count": 0}]}
    scenario["timeline"] = [{"t": "soon", "states": None}, {"states": {"running": True}}]
    scenario["violations"] = ["not a mapping"]
    report["criteria"][1] = "not a mapping"
    report["settings"] = None
    page = render_html(report)
    assert not balance(page).errors


def test_almost_empty_report_renders() -> None:
    """An empty result still makes a page that says it is incomplete."""
    page = render_html({})
    assert "INCOMPLETE" in page
    assert "<svg" not in page
    parser = balance(page)
    assert parser.errors == [] and parser.stack == []


def test_store_password_is_not_shown(report: dict[str, Any]) -> None:
    """A PostgreSQL DSN in the settings loses its password in the page."""
    report["settings"]["store"] = "postgresql://chaos:hunter2@db:5432/trilha"
    page = render_html(report)
    assert "hunter2" not in page
    assert "postgresql://chaos:***@db:5432/trilha" in page


@pytest.mark.parametrize(
    ("values", "counts"),
    [
        ([], [0, 0, 0, 0]),
        ([0.1, 0.5], [2, 0, 0, 0]),  # an edge belongs to its own bucket (le)
        ([0.50001, 1.0, 1.5, 2.0], [0, 2, 2, 0]),
        ([2.0001, 100.0, math.inf], [0, 0, 0, 3]),
        ([-1.0, math.nan, 0.7], [1, 1, 0, 0]),  # NaN is no duration: skipped
    ],
)
def test_histogram_buckets(values: list[float], counts: list[int]) -> None:
    """Values land in the first bucket whose edge is at least the value; the rest overflow."""
    buckets = histogram(values, [0.5, 1, 2])
    assert buckets == [
        {"le": 0.5, "count": counts[0]},
        {"le": 1, "count": counts[1]},
        {"le": 2, "count": counts[2]},
        {"le": None, "count": counts[3]},
    ]


def test_histogram_counts_every_value_once() -> None:
    """The buckets add up to the values, and the overflow bucket is JSON's null."""
    rng = random.Random(3)
    values = [rng.expovariate(0.5) for _ in range(1000)]
    buckets = histogram(values, EDGES)
    assert sum(int(b["count"] or 0) for b in buckets) == 1000
    assert json.loads(json.dumps(buckets))[-1] == {"le": None, "count": buckets[-1]["count"]}


def test_histogram_without_edges_is_one_overflow_bucket() -> None:
    """No edges: everything is in the single unbounded bucket."""
    assert histogram([1.0, 2.0], []) == [{"le": None, "count": 2}]


@pytest.mark.parametrize("edges", [[1, 1], [2, 1], [0.5, math.inf], [math.nan]])
def test_histogram_rejects_bad_edges(edges: list[float]) -> None:
    """Edges must be finite and strictly increasing, or the buckets would lie."""
    with pytest.raises(ValueError, match="strictly increasing"):
        histogram([1.0], edges)
