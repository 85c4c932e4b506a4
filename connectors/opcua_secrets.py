"""Secrets of the OPC-UA connections: read from private files, masked in every log record.

Passwords (the collector's, the plant server's users) come from the environment or from a file
only its owner may read (:func:`read_secret_file`, :func:`read_private_text`), never from the
command line or a spec. asyncua's DEBUG log prints whole requests, identity tokens included:
:func:`protect_secret` masks a secret in every record of asyncua's and this package's loggers,
and a :class:`SecretFilter` on a handler masks it in everything that handler writes.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from twin.errors import ConnectorError

log = logging.getLogger(__name__)


def read_secret_file(path: str | Path) -> str:
    """The secret on the first line of ``path`` (no trailing newline)."""
    lines = read_private_text(path).splitlines()
    if not lines or not lines[0]:
        raise ConnectorError(f"secret file {path} is empty (the secret goes on its first line)")
    return lines[0]


def read_private_text(path: str | Path) -> str:
    """The text of a file holding secrets; warns when other users may read it."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectorError(f"cannot read secret file {p}: {exc.strerror or exc}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s is readable by other users: chmod 600 it", p)
    return text


class SecretFilter(logging.Filter):
    """Masks every registered secret in a record's message (and in its bytes repr)."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on."""
        self.secrets.add(secret)
        self.secrets.add(repr(secret.encode("utf-8"))[2:-1])  # as it shows inside b'...'

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_SECRETS = SecretFilter()
#: asyncua loggers that print whole requests (identity tokens included) at DEBUG
_REQUEST_LOGGERS = (
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.client",
    "asyncua.server.uaprocessor",
    "asyncua.server.internal_session",
    "asyncua.server.internal_server",
    "asyncua.server.binary_server_asyncio",
)


def protect_secret(secret: str) -> None:
    """Mask ``secret`` as ``***`` in every record of asyncua's and this package's loggers.

    A filter on the emitting logger applies before any handler (pytest's caplog included), so
    the secret is gone wherever the record goes.
    """
    if not secret:
        return
    _SECRETS.add(secret)
    names = {
        n for n in logging.Logger.manager.loggerDict if n.startswith(("asyncua", "connectors"))
    }
    for name in names.union(_REQUEST_LOGGERS):
        logger = logging.getLogger(name)
        if _SECRETS not in logger.filters:
            logger.addFilter(_SECRETS)
