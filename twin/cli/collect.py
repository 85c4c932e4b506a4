"""``twin collect``: subscribe to a plant's OPC-UA server and append every sample to a historian.

Runs until SIGINT / SIGTERM or ``--duration`` seconds, then hands on what it holds, flushes the
historian, closes the session and exits 0. Bad input exits 2 with a one-line message: an endpoint
that is not ``opc.tcp://``, a historian path that is a file, no server answering within
``--connect-timeout`` (unless ``--wait``), units or ranges that disagree with the spec under
``--strict``, a spec of which the server serves no tag. The password of ``--user`` comes from the environment
variable ``TWIN_OPCUA_PASSWORD``, never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.opcua import CollectorSettings
    from connectors.opcua_security import Security

from twin.cli.args import add_historian_arg, positive_float
from twin.errors import TwinError
from twin.spec import spec_from_arg

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="collect a plant's tags from an OPC-UA server into a historian",
        description="Subscribe to every tag of SPEC on the OPC-UA server at URL and append the "
        "samples (value, status code, source timestamp) to the historian in DIR. Reconnects on "
        "its own after the server goes away and records the gap. Stops on Ctrl-C, SIGTERM or "
        "after --duration seconds. The password for --user is read from $TWIN_OPCUA_PASSWORD.",
    )
    p.add_argument("--spec", required=True, help="plant spec: a TOML file or a built-in name")
    add_historian_arg(p)
    p.add_argument(
        "--duration", type=positive_float, metavar="S", help="stop after S seconds (> 0)"
    )
    p.add_argument(
        "--flush-every", type=float, default=2.0, metavar="S", help="flush at least every S s"
    )
    p.add_argument(
        "--log-every", type=float, default=30.0, metavar="S", help="log the counters every S s"
    )
    add_connection_args(p)
    p.set_defaults(func=_collect)


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """Add the OPC-UA connection options shared by ``twin collect`` and ``twin run``.

    ``--endpoint``, the collector's subscription settings and the security group (identity,
    certificate, policy, mode); read them back with :func:`security_from_args` and
    :func:`settings_from_args`.
    """
    p.add_argument("--endpoint", required=True, metavar="URL", help="opc.tcp://host:port/path")
    p.add_argument(
        "--publishing-interval",
        type=float,
        metavar="S",
        help="OPC-UA publishing interval (default: half the sample period, at most 0.5 s)",
    )
    p.add_argument(
        "--chunk-size", type=int, default=500, help="monitored items per CreateMonitoredItems call"
    )
    p.add_argument(
        "--max-backoff",
        type=float,
        default=10.0,
        metavar="S",
        help="longest wait between reconnection attempts",
    )
    p.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="exit with an error when no first connection succeeded within S s (default 30)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="keep trying to reach a server that is not there yet (no --connect-timeout)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse to collect when the server's EngineeringUnits or EURange of a tag "
        "disagree with the spec (default: a warning per tag)",
    )
    add_security_args(p)


def add_security_args(p: argparse.ArgumentParser) -> None:
    """Add the OPC-UA security group (identity, certificate, policy, mode) to ``p``; read it back
    with :func:`security_from_args`."""
    sec = p.add_argument_group("security")
    sec.add_argument("--user", help="user name; the password comes from $TWIN_OPCUA_PASSWORD")
    sec.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password of --user from the first line of FILE (chmod 600)",
    )
    sec.add_argument(
        "--cert-auth",
        action="store_true",
        help="sign in as the holder of --cert (X.509 identity) instead of a user name",
    )
    sec.add_argument("--cert", help="client certificate (PEM/DER) for Sign or SignAndEncrypt")
    sec.add_argument("--key", help="private key of --cert")
    sec.add_argument(
        "--security-policy",
        choices=["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"],
        help="security policy (default None; Basic256Sha256 when --cert is given)",
    )
    sec.add_argument(
        "--security-mode",
        choices=["None", "Sign", "SignAndEncrypt"],
        help="message security mode (default SignAndEncrypt when a policy is set)",
    )


def security_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Security:
    """The :class:`Security` of the options :func:`add_connection_args` added (password from
    ``env``, default the process environment, or from ``--password-file``)."""
    from connectors.opcua_security import Security

    return Security.from_options(
        user=args.user,
        cert=args.cert,
        key=args.key,
        policy=args.security_policy,
        mode=args.security_mode,
        env=os.environ if env is None else env,
        password_file=args.password_file,
        cert_auth=args.cert_auth,
    )


def settings_from_args(args: argparse.Namespace) -> CollectorSettings:
    """The :class:`CollectorSettings` of the options :func:`add_connection_args` added."""
    from connectors.opcua import CollectorSettings

    return CollectorSettings(
        publishing_interval_s=args.publishing_interval,
        chunk_size=args.chunk_size,
        backoff_max_s=args.max_backoff,
        connect_timeout_s=None if args.wait else args.connect_timeout,
        strict_units=args.strict,
    )


def _collect(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.collect import run_collect
    from connectors.opcua_security import check_endpoint

    spec = spec_from_arg(args.spec)
    spec.require_nodes("collect")
    endpoint = check_endpoint(args.endpoint)
    if args.historian.exists() and not args.historian.is_dir():
        raise TwinError(f"historian {args.historian} is a file, not a folder: name a folder")
    security = security_from_args(args)
    settings = settings_from_args(args)
    quiet_asyncua(args.log_level, security.password)
    asyncio.run(
        run_collect(
            spec,
            endpoint,
            args.historian,
            settings=settings,
            security=security,
            duration_s=args.duration,
            flush_every_s=args.flush_every,
            log_every_s=args.log_every,
        )
    )
    return 0


class _ExpectedOutage(logging.Filter):
    """Keeps asyncua's tracebacks for a lost connection out of the log (the collector says it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("asyncua"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionError | OSError | TimeoutError)


def quiet_asyncua(level: str, password: str | None) -> None:
    """Keep asyncua's outage tracebacks (logged at ERROR) for --log-level DEBUG; mask ``password``.

    ``twin collect`` and ``twin run`` call it once logging is configured. The password is masked
    on every handler, whatever logger the record comes from: asyncua's DEBUG log prints whole
    requests.
    """
    from connectors.opcua_secrets import SecretFilter

    for handler in logging.getLogger().handlers:
        if password:
            handler.addFilter(SecretFilter(password))
        if level != "DEBUG":
            handler.addFilter(_ExpectedOutage())
    if level != "DEBUG":
        logging.getLogger("asyncua").setLevel(logging.ERROR)
