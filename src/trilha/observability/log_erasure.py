"""Removing an erased contact's lines from the process log files (``[logging] file`` and
its rotated copies ``file.1`` ... ``file.N``).

Lines are masked already (phone numbers, CPF, e-mails), but the execution and
conversation ids and the texts of messages may still be there. A line is the contact's
when it names (as a JSON string) one of the erased executions, one of their
conversations or the contact's id. Each file that holds such lines is written anew
beside itself without them and renamed over the old one (atomic: a crash leaves the old
file or the new one, never half of each). A file this process writes is rewritten under
its handler's lock, the handler reopening the new file for its next line; a file another
process writes at the same time would go on receiving that process's lines in the old,
unlinked file: erase through that process (the API of the ``trilha serve`` writing it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from trilha.observability.logging import file_handlers


def needles(contact_id: str | None, ids: Iterable[str]) -> list[bytes]:
    """What marks a line as the contact's: the JSON strings of its ids."""
    values = [*([contact_id] if contact_id else []), *ids]
    return sorted({json.dumps(v, ensure_ascii=False).encode() for v in values if v})


def files_of(path: Path, backups: int) -> list[Path]:
    """The log file and its rotated copies that exist."""
    names = [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1))]
    return [p for p in names if p.is_file()]


def erase_lines(path: str | os.PathLike[str], backups: int, marks: list[bytes]) -> int:
    """Rewrite the log file and its rotated copies without the lines holding any of
    ``marks``; returns how many lines went."""
    if not marks:
        return 0
    target = Path(path)
    with _paused(target):
        return sum(_rewrite(p, marks) for p in files_of(target, backups))


@contextlib.contextmanager
def _paused(path: Path) -> Iterator[None]:
    """Hold this process's handlers of ``path`` (their lock) with their file closed, so
    no line is written to the old file while it is replaced; each reopens the new one."""
    held: list[logging.Handler] = []
    try:
        for handler in file_handlers():
            if isinstance(handler, logging.FileHandler) and _same(handler.baseFilename, path):
                handler.acquire()
                held.append(handler)
                stream = handler.stream
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.flush()
                        stream.close()
                    handler.stream = None
        yield
    finally:
        for handler in held:
            handler.release()


def _same(name: str, path: Path) -> bool:
    try:
        return os.path.abspath(name) == str(path.resolve())
    except OSError:
        return False


def _rewrite(path: Path, marks: list[bytes]) -> int:
    """Copy ``path`` without the marked lines beside it and rename the copy over it
    (streamed: a big file is never held in memory); nothing is replaced when no line
    matched."""
    removed = 0
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as new, path.open("rb") as old:
            for line in old:
                if any(mark in line for mark in marks):
                    removed += 1
                else:
                    new.write(line)
            new.flush()
            os.fsync(new.fileno())
        if removed:
            with contextlib.suppress(OSError):
                os.chmod(name, path.stat().st_mode & 0o777)
            os.replace(name, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)  # the copy not used (or already renamed: nothing there)
    return removed
