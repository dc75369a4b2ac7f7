"""``trilha chaos``'s report: the run's result as ``report.json`` and ``report.html``.

The HTML is read long after the run, often as a CI artefact opened on a laptop with
no network, so it carries everything inside itself: inline CSS (light and dark), charts
drawn here as inline SVG, no script, no web font, no link. Every text that comes from
the run is escaped: a failing flow's error message is exactly where a ``<`` turns up.

The input is a plain JSON-able dict rather than a model so that a report written by an
older or newer runner still renders: a missing or odd part drops its section instead of
failing the run at its very end, after minutes of work.
"""

from __future__ import annotations

import html
import json
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["histogram", "render_html", "write_report"]

#: more timeline buckets than this are merged before drawing, so that a long run's
#: report stays small (a polyline point or a bar per bucket is what costs bytes)
MAX_CHART_BUCKETS = 240

#: the debugger's hue per execution state, so a state has one colour everywhere
_STATE_COLOURS = {
    "running": "#2563eb",
    "waiting_input": "#0891b2",
    "waiting_delay": "#7c3aed",
    "recovering": "#ea580c",
    "paused": "#a16207",
    "fallback": "#db2777",
    "degraded": "#ca8a04",
    "completed": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#6b7280",
    "timeout": "#9f1239",
}
#: for states this module does not know yet (a newer engine)
_SPARE_COLOURS = ("#0d9488", "#4f46e5", "#65a30d", "#c026d3", "#b45309")
#: lines differ by dash as well as hue: two similar hues stay apart, and so does print
_DASHES = ("", "7 3", "2 3")

#: verdict -> (symbol, word, meaning): colour, symbol and word, so no one needs colour
_VERDICTS = {
    "target": ("★", "target", "meets the target"),
    "pass": ("✓", "pass", "meets the required level, below the target"),
    "fail": ("✗", "fail", "below the required level"),
}
_NO_VERDICT = ("–", "n/a", "nothing to measure")


# ---------------------------------------------------------------------------
# public API


def histogram(
    values: Sequence[float], edges: Sequence[float]
) -> list[dict[str, float | int | None]]:
    """Counts per bucket: ``[{"le": edge, "count": n}, ...]`` plus a last ``{"le": None}``.

    A value lands in the first bucket whose edge is at least the value (Prometheus's
    ``le``); ``None`` stands for infinity, JSON having none. Counts are per bucket, not
    cumulative, because the report draws them as bars. NaN is skipped: it is no
    duration, and counting it anywhere would invent one."""
    bounds = [float(e) for e in edges]
    if not all(math.isfinite(b) for b in bounds) or any(a >= b for a, b in pairwise(bounds)):
        raise ValueError(f"histogram edges must be finite and strictly increasing: {edges!r}")
    counts = [0] * (len(bounds) + 1)
    for value in values:
        if not math.isnan(value):
            counts[bisect_left(bounds, value)] += 1
    buckets: list[dict[str, float | int | None]] = [
        {"le": edge, "count": n} for edge, n in zip(edges, counts, strict=False)
    ]
    buckets.append({"le": None, "count": counts[-1]})
    return buckets


def write_report(report: Mapping[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``folder/report.json`` (indent 2, keys as given, UTF-8) and
    ``folder/report.html``; create ``folder``; return both paths.

    The JSON is written first: it is the record, and it survives should rendering fail."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    html_path = folder / "report.html"
    text = json.dumps(report, indent=2, ensure_ascii=False, default=_jsonable)
    json_path.write_text(text + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report as one self-contained HTML page."""
    criteria = [_map(c) for c in _list(report.get("criteria"))]
    names = {str(c.get("id")): str(c.get("name", "")) for c in criteria}
    scenarios = [_map(s) for s in _list(report.get("scenarios"))]
    passed = report.get("passed")
    word = "PASS" if passed is True else "FAIL" if passed is False else "INCOMPLETE"
    title = f"trilha chaos — {word}"
    if "seed" in report:
        title += f" — seed {report['seed']}"
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        _header(report),
        '<main id="main">\n',
        _overall(passed, criteria, scenarios),
        _criteria_table(criteria),
        _matrix(scenarios, names),
        *(_scenario(i, s, names) for i, s in enumerate(scenarios, start=1)),
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


# ---------------------------------------------------------------------------
# defensive readers and formatting


def _jsonable(value: object) -> object:
    """A Mapping that is not a dict (a ``MappingProxyType``) is still JSON to us."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: object) -> float | None:
    """A finite number, or None: a bool or a string is no measurement."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: object) -> str:
    n = _num(value)
    if n is None:
        return "–"
    return f"{n:,.0f}" if n == int(n) else f"{n:,.2f}"


def _seconds(value: object) -> str:
    s = _num(value)
    if s is None:
        return "–"
    if abs(s) >= 100:
        return f"{s:,.0f} s"
    return f"{s:.1f} s" if abs(s) >= 10 else f"{s:.2f} s"


def _tick(value: float) -> str:
    """An axis label: short, no trailing zeros, no float noise (0.6000000000000001)."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{round(value, 6):g}"


def _c(value: float) -> str:
    """A coordinate: a tenth of a pixel is finer than any screen needs."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _without_password(url: str) -> str:
    """A store URL may carry a password; the report is shared, the password must not be."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username}:***@{netloc}" if parts.username else f"***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _verdict(value: object, text: str | None = None) -> str:
    """A verdict as colour, symbol and word; ``text`` replaces the word (kept for
    screen readers) where a cell shows a figure instead."""
    key = value if isinstance(value, str) and value in _VERDICTS else None
    symbol, word, meaning = _VERDICTS[key] if key else _NO_VERDICT
    if key is None and isinstance(value, str) and value:
        word = value  # a verdict this module does not know: shown, not hidden
    label = _e(word) if text is None else f'<span class="sr">{_e(word)}: </span>{_e(text)}'
    return (
        f'<span class="verdict v-{key or "none"}" title="{_e(meaning)}">'
        f'<span aria-hidden="true">{symbol}</span> {label}</span>'
    )


# ---------------------------------------------------------------------------
# page sections


def _header(report: Mapping[str, Any]) -> str:
    facts: list[tuple[str, str]] = []
    if "trilha" in report:
        facts.append(("trilha", _e(report["trilha"])))
    if "seed" in report:
        facts.append(("seed", f"<code>{_e(report['seed'])}</code>"))
    if "startedAt" in report:
        at = _e(report["startedAt"])
        facts.append(("started", f'<time datetime="{at}">{at}</time>'))
    if "wallSeconds" in report:
        facts.append(("wall time", _seconds(report["wallSeconds"])))
    settings = _map(report.get("settings"))
    labels = {"executions": "executions per scenario", "concurrency": "concurrency"}
    for key, value in settings.items():
        if key == "scenarios" or isinstance(value, Mapping | list | tuple):
            continue
        if key == "store" and isinstance(value, str):
            value = _without_password(value)
        shown = "none" if value is None else value
        facts.append((labels.get(key, key), f"<code>{_e(shown)}</code>"))
    listed = _list(settings.get("scenarios"))
    if listed:
        facts.append((f"scenarios ({len(listed)})", ", ".join(_e(n) for n in listed)))
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (
        '<header class="top">\n<h1>trilha chaos report</h1>\n'
        f'<dl class="facts">{items}</dl>\n</header>\n'
    )


def _scenario_failed(scenario: Mapping[str, Any]) -> bool:
    if "failingSeed" in scenario:
        return True
    per = _map(scenario.get("criteria"))
    return any(_map(v).get("verdict") == "fail" for v in per.values())


def _overall(
    passed: object, criteria: list[Mapping[str, Any]], scenarios: list[Mapping[str, Any]]
) -> str:
    key = "pass" if passed is True else "fail" if passed is False else "none"
    symbol, word = {"pass": ("✓", "PASS"), "fail": ("✗", "FAIL")}.get(key, ("–", "INCOMPLETE"))
    failing = [c for c in criteria if c.get("verdict") == "fail"]
    if failing:
        named = ", ".join(f"{_e(c.get('id', '?'))}. {_e(c.get('name', ''))}" for c in failing)
        summary = f"Below the required level: {named}."
    elif passed is True:
        summary = f"Every criterion meets its required level across {len(scenarios)} scenarios."
    else:
        summary = "The run did not report a verdict for every criterion."
    bad = [s for s in scenarios if _scenario_failed(s)]
    if bad:
        summary += " Failing scenarios: " + ", ".join(
            _e(s.get("name", "?"))
            + (f" (seed <code>{_e(s['failingSeed'])}</code>)" if "failingSeed" in s else "")
            for s in bad
        )
        summary += "."
    return (
        f'<section class="overall v-{key}" aria-labelledby="verdict">\n'
        f'<p class="big" id="verdict"><span aria-hidden="true">{symbol}</span> {word}</p>\n'
        f"<p>{summary}</p>\n</section>\n"
    )


def _criteria_table(criteria: list[Mapping[str, Any]]) -> str:
    if not criteria:
        return ""
    rows = "".join(
        "<tr>"
        f'<td class="n">{_e(c.get("id", ""))}</td><td>{_e(c.get("name", ""))}</td>'
        f'<td class="nowrap">{_e(c.get("required", ""))}</td>'
        f'<td class="nowrap">{_e(c.get("target", ""))}</td>'
        f'<td class="n">{_e(_display(c))}</td><td>{_verdict(c.get("verdict"))}</td>'
        f"<td>{_e(c.get('detail', ''))}</td>"
        "</tr>\n"
        for c in criteria
    )
    return (
        '<section aria-labelledby="criteria-h">\n<h2 id="criteria-h">Criteria</h2>\n'
        '<div class="wrap"><table>\n<thead><tr><th scope="col" class="n">#</th>'
        '<th scope="col">criterion</th><th scope="col">required</th>'
        '<th scope="col">target</th><th scope="col" class="n">measured</th>'
        '<th scope="col">verdict</th><th scope="col">detail</th></tr></thead>\n'
        f"<tbody>\n{rows}</tbody>\n</table></div>\n</section>\n"
    )


def _display(criterion: Mapping[str, Any]) -> str:
    """The runner's own rendering of the figure; a bare number as a percentage else."""
    if isinstance(criterion.get("display"), str):
        return str(criterion["display"])
    measured = _num(criterion.get("measured"))
    return "n/a" if measured is None else f"{measured:.2%}".replace("%", " %")


def _criterion_ids(names: Mapping[str, str], scenarios: list[Mapping[str, Any]]) -> list[str]:
    if names:
        return list(names)
    found = {k for s in scenarios for k in _map(s.get("criteria"))}
    return sorted(found, key=lambda k: (len(k), k))


def _matrix(scenarios: list[Mapping[str, Any]], names: Mapping[str, str]) -> str:
    """Every scenario against every criterion at a glance, before the detail."""
    if not scenarios:
        return ""
    ids = _criterion_ids(names, scenarios)
    head = "".join(f'<th scope="col" title="{_e(names.get(i, ""))}">{_e(i)}</th>' for i in ids)
    rows = []
    for n, s in enumerate(scenarios, start=1):
        per = _map(s.get("criteria"))
        cells = "".join(
            f"<td>{_verdict(_map(per[i]).get('verdict'), _display(_map(per[i])))}</td>"
            if i in per
            else '<td class="muted">–</td>'
            for i in ids
        )
        outcomes = _map(s.get("outcomes"))
        rows.append(
            f'<tr><th scope="row"><a href="#scenario-{n}">{_e(s.get("name", "?"))}</a></th>'
            f"<td>{_verdict('fail' if _scenario_failed(s) else 'pass')}</td>"
            f'<td class="n">{_count(s.get("executions"))}</td>'
            f'<td class="n">{_count(outcomes.get("completed"))}</td>{cells}</tr>\n'
        )
    return (
        '<section aria-labelledby="matrix-h">\n<h2 id="matrix-h">Scenarios</h2>\n'
        + ('<p class="muted">Numbered columns are the criteria above.</p>\n' if names else "")
        + '<div class="wrap"><table class="matrix">\n<thead><tr><th scope="col">scenario</th>'
        '<th scope="col">verdict</th><th scope="col" class="n">executions</th>'
        f'<th scope="col" class="n">completed</th>{head}</tr></thead>\n'
        f"<tbody>\n{''.join(rows)}</tbody>\n</table></div>\n</section>\n"
    )


def _scenario(n: int, s: Mapping[str, Any], names: Mapping[str, str]) -> str:
    sid = f"scenario-{n}"
    name = str(s.get("name", f"scenario {n}"))
    simulated = s.get("simulated") is True
    meta = ["simulated clock" if simulated else "wall clock"]
    if "executions" in s:
        meta.append(f"{_count(s['executions'])} executions")
    if "wallSeconds" in s:
        meta.append(f"wall {_seconds(s['wallSeconds'])}")
    if "simulatedSeconds" in s:
        meta.append(f"simulated {_seconds(s['simulatedSeconds'])}")
    parts = [
        f'<section class="scenario" id="{sid}" aria-labelledby="{sid}-h">\n',
        f'<h2 id="{sid}-h">{_e(name)} {_verdict("fail" if _scenario_failed(s) else "pass")}</h2>\n',
    ]
    if s.get("description"):
        parts.append(f'<p class="desc">{_e(s["description"])}</p>\n')
    parts.append(f'<p class="muted">{" · ".join(meta)}</p>\n')
    if "failingSeed" in s:
        parts.append(
            '<p class="alert">Failed a required criterion; the failing seed is '
            f"<code>{_e(s['failingSeed'])}</code>.</p>\n"
        )
    tables = [
        _counts_table("Outcomes", "outcome", _map(s.get("outcomes")), _num(s.get("executions"))),
        _counts_table("Faults injected", "fault", _map(s.get("faults")), None),
        _flaky_table(_map(s.get("flakyDependency"))),
    ]
    if any(tables):
        parts.append(f'<div class="cols">{"".join(tables)}</div>\n')
    parts.append(_scenario_criteria(_map(s.get("criteria")), names))
    timeline = _coarsen([_map(b) for b in _list(s.get("timeline"))])
    # the two small charts side by side, then the wide one
    charts = [
        _recovery_chart(f"{sid}-rec", name, _map(s.get("recoverySeconds"))),
        _throughput_chart(f"{sid}-tp", name, timeline, simulated),
        _states_chart(f"{sid}-st", name, timeline, simulated),
    ]
    if any(charts):
        parts.append(f'<div class="charts">{"".join(charts)}</div>\n')
    parts.append(_violations(_list(s.get("violations"))))
    parts.append("</section>\n")
    return "".join(parts)


def _flaky_table(flaky: Mapping[str, Any]) -> str:
    """A dependency failing at random (``flaky_dependency``): what it did, and whether
    the breaker or a fallback took it for down."""
    if not flaky:
        return ""
    counts = {
        f"calls to {flaky.get('dependency', '?')}": flaky.get("calls"),
        "failed at random": flaky.get("failedCalls"),
        "breaker openings": flaky.get("breakerOpenings"),
        "executions that fell back": flaky.get("fellBack"),
    }
    return _counts_table("Flaky dependency", "what", counts, None)


def _counts_table(title: str, what: str, counts: Mapping[str, Any], total: float | None) -> str:
    if not counts:
        return ""
    rows = []
    for key, value in counts.items():
        n = _num(value)
        zero = ' class="muted"' if n == 0 else ""
        share = ""
        if total:  # a share of the executions, where the counts are of executions
            share = f'<td class="n">{n / total:.1%}</td>' if n is not None else "<td></td>"
        rows.append(
            f'<tr{zero}><th scope="row">{_e(key)}</th>'
            f'<td class="n">{_count(value)}</td>{share}</tr>'
        )
    extra = '<th scope="col" class="n">share</th>' if total else ""
    return (
        f'<div><h3>{_e(title)}</h3><table>\n<thead><tr><th scope="col">{_e(what)}</th>'
        f'<th scope="col" class="n">count</th>{extra}</tr></thead>\n'
        f"<tbody>{''.join(rows)}</tbody>\n</table></div>"
    )


def _scenario_criteria(per: Mapping[str, Any], names: Mapping[str, str]) -> str:
    if not per:
        return ""
    order = [i for i in names if i in per] + sorted(k for k in per if k not in names)
    rows = "".join(
        f'<tr><td class="n">{_e(i)}</td><td>{_e(names.get(i, ""))}</td>'
        f'<td class="n">{_e(_display(_map(per[i])))}</td>'
        f"<td>{_verdict(_map(per[i]).get('verdict'))}</td>"
        f"<td>{_e(_map(per[i]).get('detail', ''))}</td></tr>\n"
        for i in order
    )
    return (
        '<h3>Criteria in this scenario</h3>\n<div class="wrap"><table>\n<thead><tr>'
        '<th scope="col" class="n">#</th><th scope="col">criterion</th>'
        '<th scope="col" class="n">measured</th>'
        '<th scope="col">verdict</th><th scope="col">detail</th></tr></thead>\n'
        f"<tbody>\n{rows}</tbody>\n</table></div>\n"
    )


def _violations(violations: list[Any]) -> str:
    if not violations:
        return ""
    rows = "".join(
        f'<tr class="sev-{_e(_map(v).get("severity", ""))}">'
        f"<td><code>{_e(_map(v).get('executionId', ''))}</code></td>"
        f"<td>{_e(_map(v).get('rule', ''))}</td><td>{_e(_map(v).get('severity', ''))}</td>"
        f"<td>{_e(_map(v).get('detail', ''))}</td></tr>\n"
        for v in violations
    )
    return (
        f'<h3>Violations ({len(violations)})</h3>\n<div class="wrap"><table>\n<thead><tr>'
        '<th scope="col">execution</th><th scope="col">rule</th><th scope="col">severity</th>'
        '<th scope="col">detail</th></tr></thead>\n'
        f"<tbody>\n{rows}</tbody>\n</table></div>\n"
    )


# ---------------------------------------------------------------------------
# charts


@dataclass(frozen=True)
class _Bucket:
    """One timeline bucket, read defensively: a bad field is a zero, never a crash."""

    t: float
    states: dict[str, float]
    completed: float | None


@dataclass(frozen=True)
class _Timeline:
    buckets: list[_Bucket]
    width: float  # seconds per bucket
    merged: int  # source buckets per drawn bucket


@dataclass(frozen=True)
class _Box:
    """A plot area inside an SVG of ``width`` x ``height``, mapping data to pixels."""

    width: float
    height: float
    x_hi: float
    y_hi: float
    left: float = 56
    right: float = 16
    top: float = 14
    bottom: float = 46

    def x(self, value: float) -> float:
        return self.left + (self.width - self.left - self.right) * value / self.x_hi

    def y(self, value: float) -> float:
        return (
            self.height - self.bottom - (self.height - self.top - self.bottom) * value / self.y_hi
        )


def _coarsen(raw: list[Mapping[str, Any]]) -> _Timeline | None:
    """The timeline as drawn: at most :data:`MAX_CHART_BUCKETS` buckets. Merged state
    counts keep their peak (a spike is what a reader looks for); throughput is summed."""
    if not raw:
        return None
    times = [_num(b.get("t")) for b in raw]
    ts = [float(i) if t is None else t for i, t in enumerate(times)]
    width = ts[1] - ts[0] if len(ts) > 1 and ts[1] > ts[0] else 1.0
    merged = max(1, math.ceil(len(raw) / MAX_CHART_BUCKETS))
    buckets: list[_Bucket] = []
    for start in range(0, len(raw), merged):
        group = raw[start : start + merged]
        states: dict[str, float] = {}
        completed: float | None = None
        for b in group:
            for state, value in _map(b.get("states")).items():
                states[str(state)] = max(states.get(str(state), 0.0), _num(value) or 0.0)
            done = _num(b.get("completedInBucket"))
            if done is not None:
                completed = (completed or 0.0) + done
        buckets.append(_Bucket(ts[start], states, completed))
    return _Timeline(buckets, width * merged, merged)


def _nice_ticks(high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``high``: steps of 1, 2 or 5 times a power of 10."""
    high = high if high > 0 else 1.0
    raw = high / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(math.ceil(step)))
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _svg_open(cid: str, box: _Box, title: str, desc: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {_c(box.width)} {_c(box.height)}" role="img" '
        f'aria-labelledby="{cid}-t {cid}-d">'
        f'<title id="{cid}-t">{_e(title)}</title><desc id="{cid}-d">{_e(desc)}</desc>\n'
    )


def _y_axis(box: _Box, ticks: list[float], label: str) -> str:
    out = []
    for v in ticks:
        y = _c(box.y(v))
        out.append(
            f'<line class="grid" x1="{_c(box.left)}" x2="{_c(box.width - box.right)}" '
            f'y1="{y}" y2="{y}"/><text x="{_c(box.left - 6)}" y="{y}" dy="0.32em" '
            f'text-anchor="end">{_tick(v)}</text>\n'
        )
    middle = _c((box.top + box.height - box.bottom) / 2)
    out.append(
        f'<text class="axis-title" transform="translate(13 {middle}) rotate(-90)" '
        f'text-anchor="middle">{_e(label)}</text>\n'
    )
    return "".join(out)


def _x_axis(box: _Box, label: str, ticks: list[float] | None = None) -> str:
    base = _c(box.height - box.bottom)
    out = [
        f'<line class="axis" x1="{_c(box.left)}" x2="{_c(box.width - box.right)}" '
        f'y1="{base}" y2="{base}"/>\n'
    ]
    for v in ticks or []:
        x = _c(box.x(v))
        out.append(
            f'<line class="axis" x1="{x}" x2="{x}" y1="{base}" '
            f'y2="{_c(box.height - box.bottom + 4)}"/>'
            f'<text x="{x}" y="{_c(box.height - box.bottom + 16)}" text-anchor="middle">'
            f"{_tick(v)}</text>\n"
        )
    out.append(
        f'<text class="axis-title" x="{_c((box.left + box.width - box.right) / 2)}" '
        f'y="{_c(box.height - 6)}" text-anchor="middle">{_e(label)}</text>\n'
    )
    return "".join(out)


def _time_ticks(box: _Box) -> list[float]:
    return [t for t in _nice_ticks(box.x_hi, 6) if t <= box.x_hi * (1 + 1e-9)]


def _figure(svg: str, caption: str, extra: str = "", *, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return f"<figure{cls}>{svg}</svg>{extra}<figcaption>{caption}</figcaption></figure>\n"


def _recovery_chart(cid: str, scenario: str, recovery: Mapping[str, Any]) -> str:
    """Bars per bucket, buckets evenly spaced: edges grow roughly geometrically, and a
    linear axis would squash the fast recoveries, which are most of them."""
    buckets = [_map(b) for b in _list(recovery.get("histogram"))]
    if not buckets:
        return ""
    labels: list[str] = []
    last_edge: float | None = None
    for b in buckets:
        edge = _num(b.get("le"))
        if edge is None:
            labels.append(f">{_tick(last_edge)}" if last_edge is not None else "all")
        else:
            labels.append(f"≤{_tick(edge)}")
            last_edge = edge
    counts = [_num(b.get("count")) or 0.0 for b in buckets]
    ticks = _nice_ticks(max(counts), 4, integer=True)
    box = _Box(480, 250, x_hi=len(buckets), y_hi=ticks[-1])
    stats = ", ".join(
        f"{k} {_seconds(recovery[k])}"
        for k in ("p50", "p99", "max")
        if _num(recovery.get(k)) is not None
    )
    total = _count(recovery.get("count", sum(counts)))
    head = f"{total} recoveries" + (f"; {stats}" if stats else "")
    desc = f"{head}. " + ", ".join(
        f"{lab} s: {_count(n)}" for lab, n in zip(labels, counts, strict=True)
    )
    out = [
        _svg_open(cid, box, f"Recovery time, {scenario}", desc),
        _y_axis(box, ticks, "recoveries"),
    ]
    band = box.x(1) - box.x(0)
    rotate = len(buckets) > 10
    base = box.height - box.bottom
    for i, (label, n) in enumerate(zip(labels, counts, strict=True)):
        x0 = box.x(i) + band * 0.15
        y = box.y(n)
        middle = _c(box.x(i) + band / 2)
        out.append(
            f'<rect class="bar" x="{_c(x0)}" y="{_c(y)}" width="{_c(band * 0.7)}" '
            f'height="{_c(base - y)}"><title>{_e(label)} s: {_count(n)}</title></rect>'
        )
        if n:
            out.append(
                f'<text class="value" x="{middle}" y="{_c(y - 4)}" '
                f'text-anchor="middle">{_count(n)}</text>'
            )
        if rotate:
            out.append(
                f'<text transform="translate({middle} {_c(base + 12)}) rotate(-35)" '
                f'text-anchor="end">{_e(label)}</text>\n'
            )
        else:
            out.append(
                f'<text x="{middle}" y="{_c(base + 16)}" text-anchor="middle">{_e(label)}</text>\n'
            )
    out.append(_x_axis(box, "recovery time (seconds)"))
    return _figure("".join(out), f"Recovery time: {_e(head)}.")


def _clock(simulated: bool) -> str:
    return "seconds since start (simulated clock)" if simulated else "seconds since start"


def _state_colour(state: str, spare: list[str]) -> str:
    if state in _STATE_COLOURS:
        return _STATE_COLOURS[state]
    colour = _SPARE_COLOURS[len(spare) % len(_SPARE_COLOURS)]
    spare.append(state)
    return colour


def _states_chart(cid: str, scenario: str, timeline: _Timeline | None, simulated: bool) -> str:
    if timeline is None:
        return ""
    seen = {s for b in timeline.buckets for s, v in b.states.items() if v > 0}
    if not seen:
        return ""
    known = [s for s in _STATE_COLOURS if s in seen]
    states = known + sorted(seen - set(known))
    peak = max(b.states.get(s, 0.0) for b in timeline.buckets for s in states)
    ticks = _nice_ticks(peak, 5, integer=True)
    end = timeline.buckets[-1].t + timeline.width
    box = _Box(960, 280, x_hi=end if end > 0 else 1.0, y_hi=ticks[-1])
    summary = []
    for s in states:
        values = [b.states.get(s, 0.0) for b in timeline.buckets]
        top = max(values)
        at = timeline.buckets[values.index(top)].t
        summary.append(f"{s} peaks at {_count(top)} at {_tick(at)} s, ends at {_count(values[-1])}")
    merged = (
        f" ({timeline.merged} buckets merged into each point, at their peak)"
        if timeline.merged > 1
        else ""
    )
    desc = "; ".join(summary) + "." + merged
    out = [
        _svg_open(cid, box, f"Executions per state over time, {scenario}", desc),
        _y_axis(box, ticks, "executions"),
        _x_axis(box, _clock(simulated), _time_ticks(box)),
    ]
    legend = []
    spare: list[str] = []
    for i, s in enumerate(states):
        colour = _state_colour(s, spare)
        dash = _DASHES[i % len(_DASHES)]
        points = " ".join(
            f"{_c(box.x(b.t))},{_c(box.y(b.states.get(s, 0.0)))}" for b in timeline.buckets
        )
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline class="line" points="{points}" stroke="{colour}"{dash_attr}>'
            f"<title>{_e(s)}</title></polyline>\n"
        )
        style = "dashed" if dash == "7 3" else "dotted" if dash else "solid"
        legend.append(
            f'<li><span class="swatch" style="border-top: 3px {style} {colour}"></span>{_e(s)}</li>'
        )
    legend_html = f'<ul class="legend" aria-label="legend">{"".join(legend)}</ul>'
    return _figure(
        "".join(out),
        "Executions in each state over time (states that were ever non-zero).",
        legend_html,
        wide=True,
    )


def _throughput_chart(cid: str, scenario: str, timeline: _Timeline | None, simulated: bool) -> str:
    if timeline is None:
        return ""
    bars = [(b.t, b.completed) for b in timeline.buckets if b.completed is not None]
    if not bars:
        return ""
    top = max(n for _, n in bars)
    total = sum(n for _, n in bars)
    ticks = _nice_ticks(top, 4, integer=True)
    end = timeline.buckets[-1].t + timeline.width
    box = _Box(480, 250, x_hi=end if end > 0 else 1.0, y_hi=ticks[-1])
    width = timeline.width
    at = next(t for t, n in bars if n == top)
    desc = (
        f"{_count(total)} completed over {_tick(end)} s in buckets of {_tick(width)} s; "
        f"the most, {_count(top)}, in the bucket starting at {_tick(at)} s."
    )
    out = [
        _svg_open(cid, box, f"Throughput over time, {scenario}", desc),
        _y_axis(box, ticks, f"completed per {_tick(width)} s"),
        _x_axis(box, _clock(simulated), _time_ticks(box)),
    ]
    pixels = box.x(width) - box.x(0)
    gap = 1.0 if pixels > 3 else 0.0
    base = box.height - box.bottom
    for t, n in bars:
        if not n:
            continue
        y = box.y(n)
        out.append(
            f'<rect class="bar2" x="{_c(box.x(t))}" y="{_c(y)}" '
            f'width="{_c(max(pixels - gap, 0.5))}" height="{_c(base - y)}">'
            f"<title>{_tick(t)}–{_tick(t + width)} s: {_count(n)}</title></rect>"
        )
    return _figure("".join(out), f"Throughput: {_e(desc)}")


# ---------------------------------------------------------------------------
# style: the debugger's palette, light and dark

_CSS = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #ffffff; --panel-2: #f0f2f5; --border: #dfe3e8; --grid: #eceff3;
  --text: #1b1f24; --muted: #5d6672; --accent: #2f6fde;
  --pass: #15803d; --target: #0f766e; --fail: #c62828; --none: #5d6672; --warn: #a16207;
  --bar: #2f6fde; --bar-2: #16a34a;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1115; --panel: #171a21; --panel-2: #1e222b; --border: #2b313c; --grid: #232833;
    --text: #e3e6eb; --muted: #9aa3af; --accent: #5b8ff0;
    --pass: #4caf6d; --target: #2dd4bf; --fail: #ef5350; --none: #9aa3af; --warn: #e0b341;
    --bar: #5b8ff0; --bar-2: #4caf6d;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 var(--sans); }
header.top, main { max-width: 1200px; margin: 0 auto; padding: 16px; }
header.top { padding-bottom: 0; }
h1 { font-size: 22px; margin: 0 0 10px; }
h2 { font-size: 18px; margin: 0 0 8px;
  display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h3 { font-size: 14px; margin: 16px 0 6px; }
code { font-family: var(--mono); font-size: 12.5px; overflow-wrap: anywhere; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 0; }
.facts div { min-width: 0; }
.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
section { background: var(--panel); border: 1px solid var(--border); border-radius: 8px;
  padding: 14px 16px; margin: 0 0 16px; }
.verdict { color: var(--vc); font-weight: 600; white-space: nowrap;
  padding: 0 7px; border-radius: 999px; border: 1px solid currentColor; font-size: 12.5px;
  background: color-mix(in srgb, var(--vc) 10%, transparent); }
.v-pass { --vc: var(--pass); } .v-target { --vc: var(--target); }
.v-fail { --vc: var(--fail); } .v-none { --vc: var(--none); }
.overall { border-left: 8px solid var(--vc);
  background: color-mix(in srgb, var(--vc) 8%, var(--panel)); }
.overall .big { font-size: 44px; font-weight: 800; margin: 0; color: var(--vc); line-height: 1.1; }
.overall p { margin: 4px 0; }
.alert { border-left: 4px solid var(--fail); padding: 4px 10px;
  background: color-mix(in srgb, var(--fail) 8%, transparent); }
.wrap { overflow-x: auto; position: relative; }  /* holds .sr, which would escape it */
table { border-collapse: collapse; width: 100%; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--border);
  text-align: left; vertical-align: top; }
thead th { font-size: 12px; color: var(--muted); font-weight: 600; }
tbody th { font-weight: 500; }
.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.matrix td { white-space: nowrap; }
.sev-error td:nth-child(3) { color: var(--fail); font-weight: 600; }
.sev-warning td:nth-child(3) { color: var(--warn); font-weight: 600; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(280px, 100%), 1fr));
  gap: 0 24px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(420px, 100%), 1fr));
  gap: 12px 24px; margin-top: 12px; }
figure { margin: 0; min-width: 0; }
figure.wide { grid-column: 1 / -1; }
figcaption { font-size: 12px; color: var(--muted); }
.chart { width: 100%; height: auto; display: block; }
.chart text { fill: var(--muted); font: 11px var(--sans); }
.chart .axis-title { fill: var(--text); font-size: 12px; }
.chart .value { fill: var(--text); font-weight: 600; }
.chart .grid { stroke: var(--grid); }
.chart .axis { stroke: var(--muted); }
.chart .bar { fill: var(--bar); }
.chart .bar2 { fill: var(--bar-2); }
.chart .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 16px;
  padding: 0; margin: 4px 0; font-size: 12.5px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 22px; height: 0; }
@media print { section { break-inside: avoid; } }
"""
