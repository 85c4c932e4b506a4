"""Helpers for the collector tests: a small OPC-UA server, free ports, subprocess control.

Run as a script it serves a toy plant (``python collector_helpers.py --port P --tags N``) so a
test can SIGKILL and restart a real server process; imported, it offers the same server as an
in-process coroutine for tests that need to reach into it (bad status codes, per-call limits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Server, ua
from asyncua.common import utils as server_utils

REPO = Path(__file__).resolve().parents[2]
TOY_URI = "urn:process-twin:test:toy"
CLIENT_URI = "urn:process-twin:test:collector"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def self_signed(stem: Path, uri: str, *, server: bool) -> tuple[Path, Path]:
    """A fresh RSA key and self-signed application certificate for ``uri``: (cert.der, key.pem)."""
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = cert_gen.generate_private_key()
    use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        uri,
        {},
        [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())],
        extended=[use],
    )
    cert_path, key_path = stem.with_suffix(".der"), stem.with_suffix(".pem")
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


def toy_spec(path: Path, tags: Sequence[str], period: float) -> Path:
    """Write a spec for the toy server's tags (all DVs, node ``nsu=TOY_URI;s=toy.<tag>``)."""
    lines = ['[plant]\nname = "toy"', f"sample_period_s = {period}"]
    for name in tags:
        lines.append(
            f'[[tags]]\nname = "{name}"\nnode = "nsu={TOY_URI};s=toy.{name}"\n'
            'unit = "-"\nrole = "dv"\nlo = -1000.0\nhi = 1000.0'
        )
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


def tag_names(n: int) -> list[str]:
    return [f"x{i:03d}" for i in range(n)]


async def toy_server(
    port: int,
    tags: Sequence[str],
    period: float,
    *,
    bad: dict[str, int] | None = None,
    max_items_per_call: int | None = None,
    max_items_per_subscription: int | None = None,
    extra_namespaces: int = 0,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve ``tags`` on 127.0.0.1:port, writing a new value to each every ``period`` seconds.

    ``bad`` maps a tag to a status code it reports every other update (with no value if Bad);
    ``max_items_per_call`` makes CreateMonitoredItems refuse larger calls with
    BadTooManyOperations, like servers that publish such a limit; ``max_items_per_subscription``
    answers BadTooManyMonitoredItems for each item beyond it; ``extra_namespaces``
    registers dummy namespaces first so that the toy namespace gets a different index. Runs
    until ``stop`` is set; sets ``ready`` once it serves.
    """
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/toy/")
    for i in range(extra_namespaces):
        await server.register_namespace(f"urn:process-twin:test:dummy{i}")
    idx = await server.register_namespace(TOY_URI)
    folder = await server.nodes.objects.add_folder(idx, "toy")
    nodes = {}
    for name in tags:
        nodes[name] = await folder.add_variable(
            ua.NodeId(f"toy.{name}", idx), name, 0.0, varianttype=ua.VariantType.Double
        )
    service = server.iserver.subscription_service
    original = service.create_monitored_items
    held: dict[int, int] = {}  # subscription id -> items created

    async def limited(params: ua.CreateMonitoredItemsParameters) -> list:
        if max_items_per_call is not None and len(params.ItemsToCreate) > max_items_per_call:
            raise server_utils.ServiceError(ua.StatusCodes.BadTooManyOperations)
        items = list(params.ItemsToCreate)
        room = len(items)
        if max_items_per_subscription is not None:
            room = max(0, max_items_per_subscription - held.get(params.SubscriptionId, 0))
        accepted, refused = items[:room], items[room:]
        results = []
        if accepted:
            params.ItemsToCreate = accepted
            results = list(await original(params))
        held[params.SubscriptionId] = held.get(params.SubscriptionId, 0) + len(accepted)
        full = ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems)
        return results + [ua.MonitoredItemCreateResult(StatusCode=full) for _ in refused]

    service.create_monitored_items = limited  # type: ignore[method-assign]
    bad = bad or {}
    async with server:
        if ready is not None:
            ready.set()
        k = 0
        while stop is None or not stop.is_set():
            now = datetime.now(UTC)
            for j, (name, node) in enumerate(nodes.items()):
                value = ua.Variant(float(k + j / 1000), ua.VariantType.Double)
                status = ua.StatusCode(bad[name] if name in bad and k % 2 else 0)
                if status.is_bad():
                    value = ua.Variant()  # a failed sensor sends no value
                dv = ua.DataValue(
                    value, StatusCode=status, SourceTimestamp=now, ServerTimestamp=now
                )
                await server.write_attribute_value(node.nodeid, dv)
            k += 1
            await asyncio.sleep(period - (time.time() % period))


def start(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process with stdout and stderr going to ``log`` (appended), in the repo root."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(args),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def start_toy_server(port: int, n_tags: int, period: float, log: Path) -> subprocess.Popen:
    """The toy server in its own process (so a test can SIGKILL it); returns once it listens."""
    proc = start(
        [
            sys.executable,
            __file__,
            "--port",
            str(port),
            "--tags",
            str(n_tags),
            "--period",
            str(period),
        ],
        log,
    )
    wait_port(port)
    return proc


def collect_cmd(spec: Path | str, endpoint: str, historian: Path, *extra: str) -> list[str]:
    """The ``twin collect`` command line."""
    return [
        sys.executable,
        "-m",
        "twin.cli",
        "collect",
        "--spec",
        str(spec),
        "--endpoint",
        endpoint,
        "--historian",
        str(historian),
        *extra,
    ]


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` and reap the process."""
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description="toy OPC-UA server for the collector tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--period", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(toy_server(args.port, tag_names(args.tags), args.period))


if __name__ == "__main__":
    main()
