"""Helpers shared by the benchmark scripts: memory readings, percentiles, tables.

Not a benchmark itself (the leading underscore keeps it out of ``bench/*.py`` runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from trilha.core.percentiles import percentile

__all__ = [
    "add_store_dir",
    "drop_store_folder",
    "filesystem_of",
    "fmt",
    "peak_rss_mb",
    "percentile",
    "print_table",
    "rss_mb",
    "store_folder",
]

_PROCESS = psutil.Process(os.getpid())


def rss_mb() -> float:
    """The resident set size of this process now, in MiB."""
    return float(_PROCESS.memory_info().rss) / 2**20


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)


def filesystem_of(path: Path) -> str:
    """The mount point and type holding ``path``, e.g. ``/ (ext4)``."""
    path = path.resolve()
    best = None
    for part in psutil.disk_partitions(all=True):
        mount = Path(part.mountpoint)
        if (path == mount or mount in path.parents) and (
            best is None or len(part.mountpoint) > len(best.mountpoint)
        ):
            best = part
    return f"{best.mountpoint} ({best.fstype}, {best.device})" if best else "unknown"


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    """Print ``(label, value)`` rows under ``title``, values right-aligned."""
    width = max(len(label) for label, _ in rows)
    vwidth = max(len(value) for _, value in rows)
    print(f"\n{title}")
    print("-" * (width + vwidth + 3))
    for label, value in rows:
        print(f"{label:<{width}}   {value:>{vwidth}}")
    print("-" * (width + vwidth + 3))


def fmt(value: float, unit: str = "", digits: int = 0) -> str:
    """A number with thousands separators and an optional unit."""
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def add_store_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store-dir", type=Path, default=None, help="folder for the database (default: a temp)"
    )


def store_folder(store_dir: Path | None) -> Path:
    """The given folder, or a new temporary one (removed by :func:`drop_store_folder`)."""
    folder = store_dir or Path(tempfile.mkdtemp(prefix="trilha-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def drop_store_folder(folder: Path, store_dir: Path | None) -> None:
    if store_dir is None:
        shutil.rmtree(folder, ignore_errors=True)


async def asgi_body(receive: Any) -> bytes:
    """A whole request body from an ASGI ``receive`` (the benches' webhook receivers)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
