"""The event loop ``trilha serve`` runs on: asyncio's, minus a spin when out of files.

When the process runs out of file descriptors, ``accept()`` fails with ``EMFILE``
and asyncio's selector loop means to stop listening for a second and try again.
But up to Python 3.13 ``BaseSelectorEventLoop._accept_connection`` does not leave
its accept burst after the failure (CPython gh-151615): it tries ``backlog`` more
times (uvicorn's backlog is 2,048), reporting and scheduling a retry for each, and
the retries pile up. Measured on ``trilha serve`` held at its descriptor limit by
40 idle connections: about 25,000 failed accepts a second and half a core, for as
long as the limit lasted, and before the log was throttled, a line and a traceback
for each.

:class:`SteadyLoop` ends the burst at the first such failure, so the loop reports
it once (the log then prints it at most once a second, see
:func:`trilha.observability.logging.throttle_loop_errors`), stops listening, and
tries again a second later, as asyncio intends. It changes nothing else: the stdlib
code still runs, it only sees the listening socket through :class:`_AcceptOnce`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

#: the accept() failures asyncio answers by pausing the listener for a second
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _AcceptOnce:
    """The listening socket as one accept burst sees it: after an ``accept()`` that
    failed for want of resources, the next one answers "nothing waiting", which is
    how asyncio's loop knows to leave the burst."""

    __slots__ = ("failed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failed:
            raise BlockingIOError(errno.EAGAIN, "accept burst ended after a resource error")
        try:
            return self.sock.accept()
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self.failed = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class SteadyLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose accept burst ends at the first ``EMFILE``."""

    def _accept_connection(
        self, protocol_factory: Any, sock: Any, *args: Any, **kwargs: Any
    ) -> None:
        # the retry asyncio schedules gets the wrapper back: unwrap it, once per burst
        raw = sock.sock if isinstance(sock, _AcceptOnce) else sock
        super()._accept_connection(  # type: ignore[misc]  # a private stdlib method
            protocol_factory, _AcceptOnce(raw), *args, **kwargs
        )
