"""A cheap check that an OPC-UA server listens again: a bare TCP connect, closed at once.

After a lost session the collector does not sleep out a long backoff while the server is down:
it probes the endpoint's port every ``probe_interval_s`` and opens the full session (secure
channel, session, namespace array, subscriptions) as soon as something accepts the connection.
A probe costs a SYN and a RST while nothing listens, and an accepted connection closed before
any OPC-UA Hello when the server is back (servers drop such a connection quietly).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from urllib.parse import urlsplit

#: the OPC-UA port when an endpoint names none
DEFAULT_PORT = 4840
#: errors that mean "nothing listens there" (as opposed to a server that answered and failed)
_NOT_LISTENING = (ConnectionRefusedError, ConnectionResetError)


def host_port(endpoint: str) -> tuple[str, int]:
    """The host and TCP port of an ``opc.tcp://host[:port]/...`` endpoint."""
    parts = urlsplit(endpoint)
    return parts.hostname or "localhost", parts.port or DEFAULT_PORT


def not_listening(exc: BaseException) -> bool:
    """True when ``exc`` (from a connection attempt) says nothing listened at the endpoint."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:  # asyncua may wrap the socket's error
        seen.add(id(error))
        if isinstance(error, _NOT_LISTENING):
            return True
        if isinstance(error, OSError) and error.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
            return True
        if isinstance(error, OSError) and "Connect call failed" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


async def listens(host: str, port: int, timeout: float) -> bool:
    """True when a TCP connect to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_listening(
    endpoint: str, seconds: float, interval: float, stopping: asyncio.Event
) -> bool:
    """Wait up to ``seconds``, probing ``endpoint`` every ``interval``; True once it listens.

    Returns False when the time is up or ``stopping`` is set. ``interval`` <= 0: no probe, a
    plain wait.
    """
    deadline = time.monotonic() + seconds
    host, port = host_port(endpoint)
    while not stopping.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if interval > 0:
            started = time.monotonic()
            if await listens(host, port, min(left, max(interval, 0.5))):
                return True
            left = min(deadline - time.monotonic(), interval - (time.monotonic() - started))
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), left)
    return False
