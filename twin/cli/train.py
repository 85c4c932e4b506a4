"""``twin train``: learn a twin from a historian and save it as a folder.

Started by ``torchrun --nproc-per-node N -m twin train ...`` it trains data-parallel on N
processes (:mod:`twin.model.distributed`); rank 0 prints and saves, the other ranks are quiet.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from twin.cli.args import add_historian_arg, aware_time, positive_int

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="learn a twin of a plant from its history",
        description="Resample the historian onto the spec's sample period, train the latent "
        "dynamics model (an ensemble) on the first 70 % of the range, early-stop on the next "
        "15 %, calibrate its 90 % band on the last 15 %, and save the folder MODEL "
        "(weights, spec, normalisation, settings, validation metrics, and the historian and time "
        "range it learnt from, which `twin evaluate` fits its baselines on). Under "
        "`torchrun --nproc-per-node N -m twin train ...` it trains data-parallel on N processes "
        "(gloo on CPU, NCCL on CUDA); rank 0 saves. With --frames SHARDS it reads the frames "
        "`twin frames build` made with Spark instead of a historian.",
    )
    p.add_argument("--spec", required=True, help="spec TOML file, or a built-in plant name")
    add_historian_arg(p, help="historian", frames=True)
    p.add_argument("--out", required=True, type=Path, metavar="MODEL", help="folder to write")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default 2.5)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initialisation and the batches. Same data, seed and settings give the "
        "same twin only when epochs, not the clock, pace the training: give --max-epochs, and "
        "--minutes well above what those epochs take (a run the clock cuts, or whose learning "
        "rate the clock paces, depends on the machine's speed and load)",
    )
    p.add_argument(
        "--max-epochs",
        type=positive_int,
        help="upper bound on passes over the training windows (300)",
    )
    p.add_argument("--start", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--end", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--horizon", type=int, help="forecast horizon in samples (default 30)")
    p.add_argument("--window", type=int, help="past samples the model sees (default 24)")
    p.add_argument("--ensemble", type=int, help="ensemble members (default 5)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.add_argument("--device", help="cpu, cuda or auto (default)")
    p.add_argument(
        "--time-scales",
        choices=("given", "auto"),
        help="'auto': window and horizon from the identified linear model's dead and settling "
        "times (a --window or --horizon given is kept); default 'given' (24 and 30), which "
        "the controller was tuned at: keep it for a twin you will control with",
    )
    p.add_argument(
        "--linear-init",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="identify a linear model first and start the twin from it (default: on)",
    )
    p.add_argument(
        "--stack",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="forecast each CV and step as a combination of the network and the identified "
        "linear models, weighted on validation (default: on; needs linear first)",
    )
    p.add_argument(
        "--direct",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train a direct multi-step GRU, stacked beside the network (on a second core "
        "where one is free, else in half the budget; default: off)",
    )
    p.set_defaults(func=_train)


def _shard_frame(
    folder: Path, spec: Any, plant: str, start: Any, end: Any
) -> tuple[Any, Path | None]:
    """The frame of ``plant`` over ``[start, end)`` from the shards in ``folder``, checked to be
    built with ``spec``; and the historian they were built from (None: not here)."""
    from twin.errors import DataQualityError
    from twin.scale.shards import read_manifest, read_shards, spec_digest

    doc = read_manifest(folder)
    entry = doc.get("plants", {}).get(plant)
    if entry is not None and entry.get("spec_sha256") != spec_digest(spec):
        raise DataQualityError(
            f"{folder}: the frames of {plant} were built with another spec "
            f"({entry.get('spec_source')}) than {spec.source}: build them again with it"
        )
    frame = read_shards(folder, plant, start, end)
    built_from = Path(doc["lake"]) / f"plant={plant}" if doc.get("lake") else None
    return frame, (built_from if built_from is not None and built_from.is_dir() else None)


def _training_frame(args: argparse.Namespace, spec: Any) -> tuple[Any, Any, Any, Path | None]:
    """The frame to train on, its range, and the historian it comes from (None: unknown)."""
    from datetime import timedelta

    import polars as pl

    from twin.errors import DataQualityError
    from twin.store.historian import Historian

    start, end = args.start, args.end
    if args.frames is not None:
        frame, source = _shard_frame(args.frames, spec, args.plant or spec.name, start, end)
        if frame.is_empty():
            raise DataQualityError(f"{args.frames} holds no frame rows of {spec.name} in the range")
        start = start or frame.get_column("ts").min()
        end = end or frame.get_column("ts").max() + timedelta(seconds=spec.sample_period)
        return frame, start, end, source
    hist = Historian(args.historian)
    if start is None or end is None:
        span = hist.scan(spec.tag_names).select(
            pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")
        )
        lo, hi = span.collect().row(0)
        if lo is None:
            raise DataQualityError(f"{args.historian} holds no samples of {spec.tag_names}")
        start = start or lo
        end = end or hi + timedelta(seconds=spec.sample_period)
    return hist.frame(spec, start, end), start, end, args.historian


def _train(args: argparse.Namespace) -> int:
    from twin.model import distributed

    if distributed.env_rank() != 0:  # torchrun's other ranks: warnings and errors only
        logging.getLogger().setLevel(logging.WARNING)
    with distributed.session(args.device or "auto") as rank:
        return _train_in_session(args, rank)


def _train_in_session(args: argparse.Namespace, rank: int) -> int:
    import dataclasses

    from twin.model import distributed
    from twin.model.network import TwinConfig
    from twin.model.provenance import KEY as TRAINING_DATA
    from twin.model.twin import Twin
    from twin.spec import spec_from_arg

    spec = spec_from_arg(args.spec)
    if args.frames is None and not args.historian.is_dir():
        log.error("no historian at %s", args.historian)
        return 2
    frame, start, end, source = _training_frame(args, spec)
    options = (
        "minutes",
        "max_epochs",
        "horizon",
        "window",
        "ensemble",
        "threads",
        "device",
        "linear_init",
        "stack",
        "direct",
    )
    changes = {k: getattr(args, k) for k in options if getattr(args, k) is not None}
    if args.time_scales == "auto":
        given = (args.window is not None, args.horizon is not None)
        changes["time_scales"] = {(True, False): "auto_horizon", (False, True): "auto_window"}.get(
            given, "given" if all(given) else "auto"
        )
    config = dataclasses.replace(TwinConfig(seed=args.seed), **changes)
    world = distributed.world_size()
    if rank != 0:  # the same training, quietly; rank 0 saves the folder
        Twin.fit(spec, frame, config, progress=False)
        return 0
    print(
        f"training a twin of {spec.name}: {frame.height} samples "
        f"({start.isoformat()} .. {end.isoformat()}), budget {config.minutes:g} min"
        + (f", {world} processes" if world > 1 else ""),
        flush=True,
    )
    twin = Twin.fit(spec, frame, config)
    record = twin.metrics.get(TRAINING_DATA)
    if record and source is not None:  # so `twin evaluate` fits its baselines on the same data
        record["historian"] = str(source.resolve())
    twin.save(args.out)
    m = twin.metrics
    h = str(twin.horizon)
    why = m["training"].get("reason") or m["training"]["stopped"]
    print(f"trained in {m['training']['seconds']:.0f} s (stopped: {why})")
    if "time_scales" in m:
        ts = m["time_scales"]
        print(f"  window {twin.window}, horizon {twin.horizon} samples: {ts.get('chosen', ts)}")
    lin = m.get("linear_init")
    if lin and lin.get("model"):
        print(
            f"  linear first: {lin['model']} validates {lin['val_nrmse_linear']:.4f}, the trained "
            f"twin {lin['val_nrmse_trained']:.4f}: kept the {lin['kept']}"
        )
        stack = lin.get("stack", {})
        if len(stack.get("used", ())) > 1:
            weights = stack["weight"][h]
            print(
                f"  stacked: {' + '.join(f'{w:.2f} {n}' for n, w in weights.items())} at step {h}"
                f"; validates {stack['val_nrmse_stacked']:.4f}"
            )
        d = stack.get("direct", {})
        if "stopped" in d:
            print(
                f"  direct GRU: {d['parameters']} parameters, {d['seconds']:.0f} s {d['process']}"
            )
        elif d:
            print(f"  direct GRU: not trained ({d['error']})")
    elif lin:
        print(f"  linear first: no linear model identified ({lin['candidates']})")
    print("validation:")
    for tag, e1 in m["nrmse"]["1"].items():
        print(
            f"  {tag:12s} NRMSE step 1 {e1:.3f} (persistence {m['persistence_nrmse']['1'][tag]:.3f})"
            f", step {h} {m['nrmse'][h][tag]:.3f} (persistence {m['persistence_nrmse'][h][tag]:.3f})"
        )
    print(f"  band coverage {m['coverage_all']:.1%} (nominal {config.coverage:.0%})")
    print(f"saved {args.out}")
    return 0
