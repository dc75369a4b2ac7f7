"""``trilha alerts``: the rules' states from a real store, evaluated by the real command,
notifying a real webhook receiver on 127.0.0.1; exit 3 while something fires."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from trilha.core.alerts import DEFAULT_RULES

ROOT = Path(__file__).resolve().parents[2]
FAQ = ROOT / "examples" / "faq.json"
NAMES = tuple(sorted(rule.name for rule in DEFAULT_RULES))
FIRING = 3


def fresh_store(cli: Any, tmp_path: Path) -> str:
    """A store with one finished conversation in it, made by ``trilha run``."""
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    result = cli("run", FAQ, "--store", url, "--input", "oi", "--json")
    assert result.returncode == 0, result.stderr
    return url


def rows(stdout: str) -> dict[str, str]:
    """The alerts table's line for each rule (the first, not the --history table's)."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        for name in NAMES:
            if name in line:
                found.setdefault(name, line)
    return found


def memory_config(path: Path, threshold: float, webhook: str) -> Path:
    path.write_text(
        "[alerts.rules.memory]\n"
        f"threshold = {threshold}\n"
        "for_seconds = 0\n"
        "[alerts.webhook]\n"
        f'url = "{webhook}"\n'
        'headers = { Authorization = "Bearer ${ALERT_TOKEN}" }\n',
        encoding="utf-8",
    )
    return path


def test_a_fresh_store_shows_every_rule_inactive(cli: Any, tmp_path: Path) -> None:
    url = fresh_store(cli, tmp_path)
    result = cli("alerts", "--store", url)
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert set(table) == set(NAMES)
    assert all("inactive" in line for line in table.values())
    assert "80.0%" in table["TrilhaMemoryHigh"] and "30.0s" in table["TrilhaTurnTooSlow"]


def test_evaluate_fires_posts_and_exits_3_then_resolves(
    cli: Any, tmp_path: Path, http_server: Any
) -> None:
    """--evaluate reads this host's real memory against a threshold of 0: the alert
    fires, the WARN line goes to stderr, the webhook has the POST before the command
    exits. The state stays in the store for the next plain ``trilha alerts``; with a
    threshold of 100 % it resolves, and the exit code goes back to 0."""
    url = fresh_store(cli, tmp_path)
    http_server.route("POST", "/alerts", status=204)
    hook = f"{http_server.url}/alerts"
    low = memory_config(tmp_path / "low.toml", 0, hook)
    secret = {"ALERT_TOKEN": "tok-123"}

    fired = cli("alerts", "--store", url, "--config", low, "--evaluate", env=secret)
    assert fired.returncode == FIRING, fired.stderr
    line = rows(fired.stdout)["TrilhaMemoryHigh"]
    assert "firing" in line and socket.gethostname() in line
    logged = [json.loads(x) for x in fired.stderr.splitlines() if x.startswith("{")]
    assert [(x["level"], x["message"]) for x in logged] == [("WARN", "alert.firing")]
    assert logged[0]["context"]["metadata"]["rule"] == "TrilhaMemoryHigh"
    (post,) = http_server.requests
    assert post["body"]["status"] == "firing" and post["body"]["rule"] == "TrilhaMemoryHigh"
    assert post["headers"]["Authorization"] == "Bearer tok-123"

    shown = cli("alerts", "--store", url, "--json", "--history")
    assert shown.returncode == FIRING, shown.stderr
    data = json.loads(shown.stdout)
    states = {a["rule"]: a for a in data["alerts"]}
    assert set(states) == set(NAMES)
    memory = states["TrilhaMemoryHigh"]
    assert memory["status"] == "firing" and memory["instance"] == socket.gethostname()
    assert memory["threshold"] == 0 and 0 < memory["value"] <= 1
    assert memory["firedAt"].endswith("Z")
    assert states["TrilhaQueueBacklog"]["status"] == "inactive"
    assert [(h["rule"], h["status"]) for h in data["history"]] == [("TrilhaMemoryHigh", "firing")]

    high = memory_config(tmp_path / "high.toml", 1.0, hook)
    resolved = cli(
        "alerts", "--store", url, "--config", high, "--evaluate", "--history", env=secret
    )
    assert resolved.returncode == 0, resolved.stderr
    assert "resolved" in rows(resolved.stdout)["TrilhaMemoryHigh"]
    assert "changes" in resolved.stdout
    assert [r["body"]["status"] for r in http_server.requests] == ["firing", "resolved"]


def test_a_missing_store_is_an_error_not_an_empty_list(cli: Any, tmp_path: Path) -> None:
    result = cli("alerts", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.returncode == 1
    assert "no store" in result.stderr and "Traceback" not in result.stderr
