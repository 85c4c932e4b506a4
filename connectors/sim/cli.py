"""``twin plant list | serve | record | spec``: run the simulated plants, named or generated."""

from __future__ import annotations

import argparse
import logging

from twin.cli.args import aware_time, positive_float, positive_int

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    plant = sub.add_parser(
        "plant", help="simulated plants: list, serve over OPC-UA, record history"
    )
    psub = plant.add_subparsers(dest="plant_command", metavar="ACTION", required=True)

    p = psub.add_parser("list", help="list the plants (and how generated ones are named)")
    p.set_defaults(func=_list)

    p = psub.add_parser(
        "spec",
        help="print or write a plant's spec (TOML)",
        description="Write a plant's spec as TOML: for a generated plant (zoo-<n>, site-<n>), whose spec is "
        "built in code, this is the file `twin train --spec` and `twin collect --spec` need.",
    )
    p.add_argument("name", help="plant name (see `twin plant list`), e.g. zoo-17")
    p.add_argument("--out", help="file to write (default: print to stdout)")
    p.set_defaults(func=_spec)

    p = psub.add_parser(
        "serve",
        help="serve a simulated plant over OPC-UA",
        description="Serve a simulated plant over OPC-UA: every spec tag live at its node id, "
        "MV setpoints writable within [lo, hi]. Ctrl-C stops it. Open (security None, anonymous) "
        "unless --security is given; users and passwords come from --users-file or "
        "$TWIN_PLANT_USERS ('user:password,...'), never from the command line.",
    )
    p.add_argument("name", help="plant name (see `twin plant list`)")
    p.add_argument("--port", type=int, default=4840, help="TCP port; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--speed", type=positive_float, default=1.0, help="times faster than real time")
    p.add_argument("--seed", type=int, default=0, help="seed of the plant's noise")
    p.add_argument(
        "--historize",
        nargs="?",
        type=positive_int,
        const=20_000,
        metavar="N",
        help="keep the last N values of every tag (default 20000, in memory) and answer "
        "HistoryRead, as a plant historian does (for `twin backfill`)",
    )
    sec = p.add_argument_group("security")
    sec.add_argument(
        "--security",
        action="append",
        metavar="POLICY/MODE",
        help="offer this endpoint security (repeatable): None, Basic256Sha256/Sign, "
        "Basic256Sha256/SignAndEncrypt, Aes128Sha256RsaOaep/Sign, ... (default: None only)",
    )
    sec.add_argument("--cert", help="server certificate (DER/PEM), e.g. from `twin certs create`")
    sec.add_argument("--key", help="private key of --cert")
    sec.add_argument(
        "--users-file",
        metavar="FILE",
        help="require users: one 'user:password' per line (default: $TWIN_PLANT_USERS)",
    )
    sec.add_argument(
        "--user-cert",
        action="append",
        default=[],
        metavar="FILE",
        help="accept the holder of this certificate as a user (repeatable)",
    )
    sec.add_argument("--trust", metavar="DIR", help="accept only client certificates found in DIR")
    sec.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=None,
        help="accept anonymous sessions even when users are required",
    )
    p.set_defaults(func=_serve)

    p = psub.add_parser(
        "record",
        help="record a plant's history under excitation into a historian folder",
        description="Run a simulated plant faster than real time under pseudo-random MV moves "
        "(within limits and rate limits) and write every tag in the historian's long format, "
        "Hive-partitioned by day. Same seed and start, same data.",
    )
    p.add_argument("name", help="plant name (see `twin plant list`)")
    p.add_argument("--hours", type=positive_float, required=True, help="plant time to record")
    p.add_argument("--out", required=True, help="historian folder to append to")
    p.add_argument("--seed", type=int, default=0, help="seed of the plant's noise and the moves")
    p.add_argument(
        "--start",
        type=aware_time,
        default=None,
        help="start, ISO 8601 with offset (default 2026-01-01T00:00:00Z, fixed for reproducibility)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_record)


def quiet_asyncua(args: argparse.Namespace) -> None:
    """asyncua logs every request at INFO; keep its warnings unless ``--log-level DEBUG``.

    The collector's ``twin.cli.collect.quiet_asyncua`` is a different job: a client reports its
    own outages, so it keeps only asyncua's errors, drops their outage tracebacks and masks the
    password; a server keeps asyncua's warnings.
    """
    if getattr(args, "log_level", "INFO") != "DEBUG":
        logging.getLogger("asyncua").setLevel(logging.WARNING)


def _list(args: argparse.Namespace) -> int:
    from connectors.sim.plants import NAMED_PLANTS, SITE_NAMES, ZOO_NAMES
    from connectors.sim.site import N_CV, N_DV, N_MV, N_UNITS

    for name, cls in NAMED_PLANTS.items():
        plant = cls(noise=False)
        spec = plant.spec
        tags = ", ".join(f"{t.name} [{t.unit}] {t.role}" for t in spec.tags)
        print(f"{name:10s} {spec.description}\n{'':10s} every {spec.sample_period:g} s: {tags}")
    print(
        f"{ZOO_NAMES:10s} generated plants, n = 0, 1, 2, ... (same n, same plant): 2-8 CVs, "
        "1-4 MVs, 0-3 DVs,\n"
        f"{'':10s} time constants over two decades, dead times, integrating levels, "
        "nonlinearities;\n"
        f"{'':10s} `twin plant spec zoo-17` prints one's spec, "
        "`python benchmarks/zoo.py` describes the benchmark's zoo"
    )
    print(
        f"{SITE_NAMES:10s} simulated sites, n = 0, 1, 2, ...: {N_UNITS} generated units side by "
        f"side with utilities,\n{'':10s} {N_CV} CVs, {N_MV} MVs, {N_DV} DVs grouped by unit "
        "(U1.TI101, ...); `twin plant spec site-1` prints one's spec"
    )
    return 0


def _spec(args: argparse.Namespace) -> int:
    from pathlib import Path

    from connectors.sim.plants import make_plant
    from twin.spec import spec_to_toml

    spec = make_plant(args.name, noise=False).spec  # an unknown name exits 2 via twin.cli
    text = spec_to_toml(spec)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote the spec of {spec.name} to {args.out}")
    else:
        print(text, end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from connectors.sim.plants import make_plant
    from connectors.sim.server import serve_until_stopped
    from connectors.sim.server_security import ServerSecurity

    plant = make_plant(args.name, seed=args.seed)  # an unknown name exits 2 via twin.cli
    security = ServerSecurity.from_options(
        security=args.security,
        cert=args.cert,
        key=args.key,
        users_file=args.users_file,
        user_certs=args.user_cert,
        trust=args.trust,
        anonymous=args.allow_anonymous,
        env=os.environ,
    )
    quiet_asyncua(args)
    asyncio.run(
        serve_until_stopped(
            plant,
            host=args.host,
            port=args.port,
            speed=args.speed,
            security=security,
            historize=args.historize is not None,
            history_count=args.historize or 20_000,
        )
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    from connectors.sim.plants import make_plant
    from connectors.sim.record import DEFAULT_START, record

    start = args.start or DEFAULT_START
    plant = make_plant(args.name, seed=args.seed)  # an unknown name exits 2 via twin.cli
    summary = record(
        plant, args.hours, args.out, seed=args.seed, start=start, progress=not args.no_progress
    )
    print(
        f"recorded {summary.plant}: {summary.samples} samples, {summary.rows} rows "
        f"({summary.start:%Y-%m-%d %H:%M} .. {summary.end:%Y-%m-%d %H:%M} UTC) into {args.out} "
        f"in {summary.seconds:.1f} s"
        + (f"; {summary.trips} samples tripped" if summary.trips else "")
    )
    return 0
