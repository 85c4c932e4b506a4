"""``twin run``: collect from the plant and recommend every interval into the historian folder.

Advisory unless ``--write`` (guarded write-back, audited; ``--approve``: operator approval).
This is where the loop meets the plant: the OPC-UA feed (:class:`connectors.collect.OpcUaFeed`)
and move writer (:class:`connectors.opcua_write.OpcUaMoveWriter`) are built from the command
line and wired into :func:`twin.loop.run.run_loop` here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.cli.args import add_historian_arg, add_release_arg, positive_float
from twin.cli.collect import add_connection_args
from twin.cli.control import _load, parse_setpoint_now
from twin.errors import TwinError
from twin.model.adaptive import GAMMA


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="collect from the plant and recommend every interval (advisory unless --write)",
        description="Collect SPEC's tags from the OPC-UA server at URL into the historian DIR "
        "and, every --interval seconds, recommend the next MV moves from the newest history and "
        "append them to DIR/recommendations/ (one JSON line each), logging one line per "
        "recommendation with the model's health (live / validation forecast error). Stale data "
        "gives a logged failed recommendation, not a move. Without --write nothing is written "
        "to the plant. With --write each recommendation is written to the spec's write nodes "
        "only when it succeeded, every value is within its limits and its rate limit of the MV "
        "measured just before the write, the data is fresh, the model is healthy "
        "(--max-error-ratio) and the collector and recommender keep up; each write is read back. "
        "Every write, read-back, refusal and approval goes to DIR/audit.jsonl. If the spec file "
        "or the model folder changes while it runs, writing stops (collecting and advising go "
        "on) until it is restarted. Stops on Ctrl-C, SIGTERM or after --duration seconds "
        "(exit 0).",
    )
    p.add_argument("--spec", required=True, help="plant spec: a TOML file or a built-in name")
    p.add_argument("--model", required=True, type=Path, help="saved twin folder")
    add_historian_arg(p)
    p.add_argument(
        "--setpoint", type=parse_setpoint_now, action="append", metavar="TAG=VALUE",
        help="CV setpoint (repeatable; default: the spec's)",
    )  # fmt: skip
    p.add_argument(
        "--interval", type=positive_float, metavar="S",
        help="seconds between recommendations (default: the sample period, at least --flush-every)",
    )  # fmt: skip
    p.add_argument(
        "--stale-after", type=positive_float, metavar="S",
        help="no recommendation from data older than S s (default: --flush-every + 3 periods)",
    )  # fmt: skip
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--flush-every", type=positive_float, default=2.0, metavar="S", help="flush every S s"
    )
    p.add_argument(
        "--log-every", type=positive_float, default=60.0, metavar="S", help="log counters every S s"
    )
    wb = p.add_argument_group("write-back (off by default)")
    wb.add_argument(
        "--write", action="store_true",
        help="write recommended MV values to the spec's write nodes when every check passes",
    )  # fmt: skip
    wb.add_argument(
        "--approve", action="store_true",
        help="with --write: write only recommendations an operator approved (the app's approve "
        "button, DIR/approvals.jsonl), each once, within --stale-after + 2 intervals of it",
    )  # fmt: skip
    wb.add_argument(
        "--max-error-ratio", type=positive_float, default=3.0, metavar="X",
        help="refuse writes while the live forecast error exceeds X times the validation error "
        "(default 3)",
    )  # fmt: skip
    wb.add_argument(
        "--rate-slack", type=float, default=0.0, metavar="F",
        help="allow MV moves up to (1 + F) x the rate limit from the freshly measured value, for "
        "noisy MV readings; from the value the move was planned from it stays within the rate "
        "limit (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--band-gamma", type=float, default=GAMMA, metavar="G",
        help="step size of the bands' live adaptation per tag and step (0: keep the calibrated "
        f"band; default {GAMMA:g}: a miss widens a band by about 10%%)",
    )  # fmt: skip
    add_release_arg(p)
    add_connection_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from connectors.collect import OpcUaFeed
    from connectors.opcua_write import OpcUaMoveWriter
    from twin.cli.collect import quiet_asyncua, security_from_args, settings_from_args
    from twin.control.setpoints import Setpoints
    from twin.loop.run import LoopSettings, run_loop
    from twin.spec import spec_from_arg

    if args.approve and not args.write:
        raise TwinError("--approve releases writes to the plant: give --write too")
    if not args.band_gamma >= 0:
        raise TwinError(f"--band-gamma must be >= 0, got {args.band_gamma}")
    if not args.rate_slack >= 0:
        raise TwinError(f"--rate-slack must be >= 0, got {args.rate_slack}")
    spec = spec_from_arg(args.spec)
    spec.require_nodes("write" if args.write else "run")  # an offline spec has no node ids
    twin = _load(args.model, None, spec)  # the historian folder is created if need be
    setpoints = Setpoints.resolve(spec, args.setpoint)
    security = security_from_args(args)
    quiet_asyncua(args.log_level, security.password)
    feed = OpcUaFeed(
        args.endpoint,
        settings=settings_from_args(args),
        security=security,
        duration_s=args.duration,
        flush_every_s=args.flush_every,
        log_every_s=args.log_every,
    )
    settings = LoopSettings(
        interval_s=args.interval,
        stale_after_s=args.stale_after,
        setpoints=setpoints,
        approve=args.approve,
        max_error_ratio=args.max_error_ratio,
        rate_slack=args.rate_slack,
        model_dir=args.model,
        band_gamma=args.band_gamma or None,
        release=tuple(args.release),
    )
    writer = OpcUaMoveWriter(args.endpoint, security) if args.write else None
    asyncio.run(run_loop(spec, feed, twin, args.historian, settings=settings, writer=writer))
    return 0
