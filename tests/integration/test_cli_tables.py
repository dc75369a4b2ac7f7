"""The CLI's tables on a narrow terminal: a time is never cut nor folded.

One store is made once for the module (a conversation, a key created and revoked, an
alert fired), and every command that prints a table of times is run at 80 and at 60
columns: each time its ``--json`` form says is in the text whole, on one line, and
nothing printed looks like a time cut short. The commands run in this process (the
real commands on a real SQLite store) with the console they print through made as
narrow as a terminal would make it. ``trilha outbox``'s table is read the same way in
test_outbox_delivery (its dead messages need a failing receiver and a server)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import trilha.cli
from trilha.observability.terminal import SafeConsole

ROOT = Path(__file__).resolve().parents[2]
FAQ = ROOT / "examples" / "faq.json"
WIDTHS = (80, 60)
#: a time as the CLI prints it
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
#: the start of a time, then an ellipsis or the cell's end: a time cut short
CUT = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]*(?:…| *│)")
FIRING = 3


@dataclass(frozen=True)
class Made:
    store: str
    execution_id: str
    config: Path


def invoke(*args: str | Path, ok: tuple[int, ...] = (0,)) -> str:
    """``trilha ARGS`` in this process: what it wrote to stdout."""
    result = CliRunner().invoke(trilha.cli.app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code in ok, result.output
    return result.stdout


def at_width(monkeypatch: pytest.MonkeyPatch, width: int, *args: str | Path) -> str:
    """``trilha ARGS`` printing its text through a console ``width`` columns wide, as
    ``trilha.cli.out`` is on such a terminal (the same console, made the same way)."""
    printed = io.StringIO()
    console = SafeConsole(highlight=False, soft_wrap=True, emoji=False, width=width, file=printed)
    with monkeypatch.context() as patch:
        patch.setattr(trilha.cli, "out", console)
        invoke(*args, ok=(0, FIRING))
    return printed.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    tmp = tmp_path_factory.mktemp("tables")
    store = f"sqlite:///{tmp / 'tables.db'}"
    ran = json.loads(invoke("run", FAQ, "--store", store, "--input", "1", "--json"))
    created = invoke("keys", "create", "--institution", "acme", "--store", store)
    key_id = created.splitlines()[-1].split("_")[1]
    invoke("keys", "create", "--institution", "beta", "--store", store)
    invoke("keys", "revoke", key_id, "--store", store)
    config = tmp / "alerts.toml"
    config.write_text("[alerts.rules.memory]\nthreshold = 0\nfor_seconds = 0\n", "utf-8")
    # this host's memory is over 0 %: the rule fires, and its change has a time
    invoke("alerts", "--store", store, "--config", config, "--evaluate", ok=(FIRING,))
    return Made(store, ran["executionId"], config)


def assert_whole(times: list[str], text: str) -> None:
    assert times and all(TIMESTAMP.fullmatch(t) for t in times), times
    for time in times:
        assert time in text, (time, text)
    assert set(TIMESTAMP.findall(text)) == set(times), text
    assert not CUT.search(text), text


@pytest.mark.parametrize("width", WIDTHS)
def test_show_prints_its_state_history_times_whole(
    made: Made, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = json.loads(invoke("show", made.execution_id, "--store", made.store, "--json"))
    text = at_width(monkeypatch, width, "show", made.execution_id, "--store", made.store)
    history = text[text.index("state history") :]
    assert_whole([h["at"] for h in shown["history"]], history)
    assert max(len(line) for line in history.splitlines()) <= width  # the rest gave way


@pytest.mark.parametrize("width", WIDTHS)
def test_keys_list_prints_creation_and_revocation_times_whole(
    made: Made, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = json.loads(invoke("keys", "list", "--store", made.store, "--json"))
    times = [k["createdAt"] for k in keys] + [k["revokedAt"] for k in keys if k["revokedAt"]]
    assert len(times) == 3  # two created, one of them revoked
    text = at_width(monkeypatch, width, "keys", "list", "--store", made.store)
    assert_whole(times, text)
    for key in keys:  # the id `trilha keys revoke` takes, whole on one line
        assert key["keyId"] in text, (key["keyId"], text)


@pytest.mark.parametrize("width", WIDTHS)
def test_alerts_history_prints_its_change_times_whole(
    made: Made, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("alerts", "--store", made.store, "--config", made.config, "--history")
    data = json.loads(invoke(*args, "--json", ok=(FIRING,)))
    text = at_width(monkeypatch, width, *args)
    assert_whole([c["updatedAt"] for c in data["history"]], text[text.index("changes") :])


@pytest.mark.parametrize("width", WIDTHS)
def test_stats_prints_its_window_whole(
    made: Made, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stats`` has no column of times: its window's start heads the tables, and an
    empty section says it in its caption, on one line however narrow."""
    since = "2020-01-02T03:04:05.678Z"
    args = ("stats", "--since", since, "--institution", "nobody", "--store", made.store)
    text = at_width(monkeypatch, width, *args)
    assert text.count(since) == 5, text  # the heading and the four empty sections
    assert not CUT.search(text), text
