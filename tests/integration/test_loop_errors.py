"""The event loop's own errors (an accept() out of file descriptors, a callback that
raised) reach the process log as ``loop.error`` lines, at most one a second for each
repeated error, the first with its stack, and a summary counts what was held back."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from trilha.observability.logging import Throttle, throttle_loop_errors

EMFILE = OSError(errno.EMFILE, "Too many open files")


async def test_a_repeated_accept_error_is_one_line_and_a_count(process_log: Any) -> None:
    """A thousand failed accepts in a burst (what asyncio reports when out of
    descriptors) print one line with the stack, then one summary counting the rest."""
    loop = asyncio.get_running_loop()
    restore = throttle_loop_errors(loop, Throttle(every=0.2))
    try:
        for _ in range(1000):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": EMFILE}
            )
        await asyncio.sleep(0.5)
    finally:
        restore()
    lines = [line for line in process_log.lines() if line["message"] == "loop.error"]
    assert len(lines) == 2, lines
    first, summary = lines
    assert first["level"] == "ERROR"
    assert first["context"]["error"]["stack"] and "Errno 24" in first["context"]["error"]["message"]
    assert first["context"]["metadata"]["detail"] == "socket.accept() out of system resource"
    assert first["context"]["metadata"]["suppressed"] == 0
    assert summary["context"]["metadata"]["suppressed"] == 999
    assert summary["context"]["metadata"]["repeated"] is True
    assert loop.get_exception_handler() is None  # put back as it was


async def test_callbacks_failing_in_a_tight_loop_are_throttled_per_error(
    process_log: Any,
) -> None:
    """Callbacks raising the same error are one kind; another error is shown at once;
    the same error a second later is shown again, without repeating its stack."""
    loop = asyncio.get_running_loop()
    restore = throttle_loop_errors(loop, Throttle(every=0.2))

    def fail(exc: Exception) -> None:
        raise exc

    try:
        for _ in range(200):
            loop.call_soon(fail, ValueError("Invalid file descriptor: -1"))
        loop.call_soon(fail, KeyError("other"))
        await asyncio.sleep(0.5)  # the summary at 0.2 s begins a second that ends at 0.4 s
        loop.call_soon(fail, ValueError("Invalid file descriptor: -1"))
        await asyncio.sleep(0.05)
    finally:
        restore()
    lines = [line for line in process_log.lines() if line["message"] == "loop.error"]
    errors = [(line["context"]["error"]["type"], line["context"]["metadata"]) for line in lines]
    assert [kind for kind, _ in errors] == ["ValueError", "KeyError", "ValueError", "ValueError"]
    assert errors[2][1]["suppressed"] == 199 and errors[2][1]["repeated"] is True
    assert errors[3][1]["suppressed"] == 0 and "repeated" not in errors[3][1]
    assert lines[0]["context"]["error"]["stack"] and not lines[3]["context"]["error"]["stack"]
    assert all(meta["detail"].startswith("Exception in callback") for _, meta in errors)
