"""Removing an erased contact's lines from the process log files (``[logging] file`` and
its rotated copies ``file.1`` ... ``file.N``).

Lines are masked already (phone numbers, CPF, e-mails), but the execution and
conversation ids and the texts of messages may still be there. A line is the contact's
when its own fields say so (:class:`Marks`): its ``executionId`` is an erased execution,
its ``context.conversationId`` one of their conversations, or its ``context.contactId``
the contact in ``context.institutionId`` the erasure's institution. Fields, not text: the
file is shared by every institution, and a short id ("1") found anywhere in a line would
take other people's lines with it.

Each file that holds such lines is copied beside itself without them and renamed over
the old one (atomic: a crash leaves the old file or the new one, never half of each).
The copy is made without holding anything; only its end (what was written meanwhile)
and the rename happen under the file handler's lock, so the process's other log lines
wait for a moment, not for the whole file. A file rotated meanwhile is copied again
under the lock. A file another process writes at the same time would go on receiving
that process's lines in the old, unlinked file: erase through that process (the API of
the ``trilha serve`` writing it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from trilha.observability.logging import file_handlers


@dataclass(frozen=True)
class Marks:
    """What makes a line the contact's, and the bytes that must be in it to be worth
    parsing (most lines are read as bytes only)."""

    institution_id: str
    contact_id: str | None
    execution_ids: frozenset[str] = frozenset()
    conversation_ids: frozenset[str] = frozenset()
    needles: tuple[bytes, ...] = field(default=(), compare=False)

    @classmethod
    def of(
        cls,
        institution_id: str,
        contact_id: str | None,
        execution_ids: Iterable[str],
        conversation_ids: Iterable[str],
    ) -> Marks:
        executions, conversations = frozenset(execution_ids), frozenset(conversation_ids)
        values = [*([contact_id] if contact_id else []), *executions, *conversations]
        needles = tuple(sorted({json.dumps(v, ensure_ascii=False).encode() for v in values}))
        return cls(institution_id, contact_id, executions, conversations, needles)

    def __bool__(self) -> bool:
        return bool(self.needles)

    def match(self, line: bytes) -> bool:
        if not any(needle in line for needle in self.needles):
            return False
        try:
            record: Any = json.loads(line)
        except ValueError:
            return False  # not one of trilha's lines: nothing says whose it is
        if not isinstance(record, dict):
            return False
        if record.get("executionId") in self.execution_ids:
            return True
        context = record.get("context")
        if not isinstance(context, dict):
            return False
        if context.get("conversationId") in self.conversation_ids:
            return True
        return (
            self.contact_id is not None
            and context.get("contactId") == self.contact_id
            and context.get("institutionId") == self.institution_id
        )


def files_of(path: Path, backups: int) -> list[Path]:
    """The log file and its rotated copies that exist."""
    names = [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1))]
    return [p for p in names if p.is_file()]


def erase_lines(path: str | os.PathLike[str], backups: int, marks: Marks) -> int:
    """Rewrite the log file and its rotated copies without the contact's lines; returns
    how many lines went."""
    if not marks:
        return 0
    target = Path(path)
    return sum(_rewrite(p, target, marks) for p in files_of(target, backups))


@contextlib.contextmanager
def _paused(path: Path) -> Iterator[None]:
    """Hold this process's handlers of ``path`` (their lock) with their file closed, so
    no line is written, and no file rotated, while a file is replaced; each handler
    reopens the new file for its next line."""
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


def _rewrite(path: Path, base: Path, marks: Marks) -> int:
    """Copy ``path`` without the contact's lines beside it (streamed: a big file is never
    held in memory), then, under the handlers' lock, copy what was appended meanwhile
    and rename the copy over it; nothing is replaced when no line matched."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as new:
            try:
                before = path.stat()
                with path.open("rb") as old:
                    removed, done = _copy(old, new, marks)
            except FileNotFoundError:  # rotated away meanwhile: its successor is read
                return 0
            with _paused(base):
                try:
                    now = path.stat()
                except FileNotFoundError:
                    return 0
                with path.open("rb") as old:
                    if now.st_ino != before.st_ino or now.st_size < done:
                        # rotated (or cut) meanwhile: the file here now is copied whole
                        new.seek(0)
                        new.truncate()
                        removed, _ = _copy(old, new, marks, partial=True)
                    else:
                        old.seek(done)
                        more, _ = _copy(old, new, marks, partial=True)
                        removed += more
                new.flush()
                os.fsync(new.fileno())
                if removed:
                    with contextlib.suppress(OSError):
                        os.chmod(name, now.st_mode & 0o777)
                    os.replace(name, path)
        return removed
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)  # the copy not used (or already renamed: nothing there)


def _copy(
    old: IO[bytes], new: IO[bytes], marks: Marks, *, partial: bool = False
) -> tuple[int, int]:
    """Copy ``old``'s lines that are not the contact's to ``new``: (lines left out,
    offset after the last line read). A last line without its newline is being written
    right now: left for the copy under the lock, unless ``partial`` (under the lock,
    nothing is being written: it is kept as it is)."""
    removed, offset = 0, old.tell()
    for line in old:
        if not line.endswith(b"\n") and not partial:
            break
        offset += len(line)
        if marks.match(line):
            removed += 1
        else:
            new.write(line)
    return removed, offset
