"""The first-start admin key on a terminal: shown to the person there, once (finding 17;
off a terminal, see test_api_basics.py::test_first_start_creates_one_admin_key)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from conftest import TRILHA, Cli

KEY = re.compile(r"trk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}")


def read_until(fd: int, pattern: re.Pattern[str], seconds: float) -> str:
    """What a terminal (the pty's master side ``fd``) shows, until ``pattern`` appears."""
    shown = ""
    deadline = time.monotonic() + seconds
    while not pattern.search(shown) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the process closed its side
                break
            if not chunk:
                break
            shown += chunk.decode("utf-8", "replace")
    return shown


def test_first_start_shows_the_key_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    """With stderr on a terminal the key is printed too, and it is the one in the file."""
    store = f"sqlite:///{tmp_path / 'fresh.db'}"
    terminal, stderr = pty.openpty()
    try:
        process = subprocess.Popen(
            # port 0: any free one (the key is shown before the server binds; no request)
            [str(TRILHA), "serve", "--port", "0", "--store", store],
            cwd=tmp_path,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        cli.spawned.append(process)
        os.close(stderr)
        shown = read_until(terminal, KEY, seconds=30)
        process.send_signal(signal.SIGTERM)
        logged = process.communicate(timeout=30)[0]
    finally:
        os.close(terminal)
    key_file = tmp_path / "fresh.db.admin-key"
    key = key_file.read_text(encoding="utf-8").strip()
    assert [m.group() for m in KEY.finditer(shown)] == [key], shown
    assert f"the key is in {key_file}" in shown
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key not in logged  # stdout, the process log, never holds it
