"""Acceptance fixtures: the real ``trilha`` console script, run as a separate process.

Every command runs with a clean environment (no ``TRILHA_STORE`` leaking in
from the developer's shell) and, unless told otherwise, inside ``tmp_path`` so
that the default ``./trilha.db`` and ``./trilha.toml`` never touch the
repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TRILHA = Path(sys.executable).parent / "trilha"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class Cli:
    """Runs ``trilha`` in ``cwd``; ``spawn`` starts one in the background (killed at teardown)."""

    cwd: Path
    env: dict[str, str]
    spawned: list[subprocess.Popen[str]] = field(default_factory=list)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TRILHA), *map(str, args)],
            cwd=cwd or self.cwd,
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def spawn(
        self, *args: str | os.PathLike[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(TRILHA), *map(str, args)],
            cwd=self.cwd,
            env=self._env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spawned.append(proc)
        return proc


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    runner = Cli(tmp_path, env)
    yield runner
    for proc in runner.spawned:  # only the processes this test started
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
