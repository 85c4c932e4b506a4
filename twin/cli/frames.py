"""``twin frames build``: many plants' regular frames from a lake, built with Spark, as shards.

Each plant's spec comes from ``--spec NAME=FILE`` (repeatable; FILE a TOML path or a built-in
plant) or else from ``--spec-dir DIR`` as ``DIR/NAME.toml``: a plant's partition name need not
be its spec's name, and a lake holds data, not specs, so the mapping is said on the command line.
pyspark is optional (``pip install '.[scale]'``); see :mod:`twin.scale.spark_frames`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from twin.cli.args import aware_time, positive_float
from twin.errors import TwinError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "frames",
        help="build plants' regular frames from a lake with Spark, as Parquet shards",
        description="Frames at scale: with Spark (pip install '.[scale]'), resample the plants "
        "of a lake onto their specs' sample periods over a time range, exactly as `twin train` "
        "does for one historian, and write one Parquet shard per plant and chunk of days plus "
        "a manifest.json.",
    )
    cmds = p.add_subparsers(dest="frames_command", metavar="COMMAND", required=True)
    b = cmds.add_parser(
        "build",
        help="build the frames of one or many plants into OUT",
        description="Read ROOT/plant=NAME/day=*/*.parquet (partition-pruned) and each plant's "
        "gaps.jsonl, and write OUT/plant=NAME/part-<chunk start>.parquet (each exactly the "
        "frame `twin train` builds for that range) and OUT/manifest.json. ROOT and OUT must be "
        "paths the Spark driver and every executor see.",
    )
    # dests other than lake/plant: those mean a historian to the commands of add_historian_arg
    b.add_argument("--lake", dest="lake_root", required=True, type=Path, metavar="ROOT")
    b.add_argument(
        "--plants", metavar="A,B",
        help="comma-separated plant partitions (default: every plant of the lake)",
    )  # fmt: skip
    b.add_argument(
        "--spec", dest="specs", action="append", default=[], metavar="NAME=FILE",
        help="the spec of plant NAME (a TOML file or a built-in plant); repeatable",
    )  # fmt: skip
    b.add_argument(
        "--spec-dir", type=Path, metavar="DIR",
        help="specs of the plants without --spec, as DIR/NAME.toml",
    )  # fmt: skip
    b.add_argument("--start", required=True, type=aware_time, metavar="T", help="ISO 8601 time")
    b.add_argument("--end", required=True, type=aware_time, metavar="T", help="ISO 8601 time")
    b.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    b.add_argument(
        "--master", default="local[2]",
        help="Spark master URL: local[N], spark://HOST:7077, yarn, ... (default local[2])",
    )  # fmt: skip
    b.add_argument(
        "--chunk-days", type=positive_float, default=1.0, metavar="N",
        help="days per shard (rounded up to whole sample periods; default 1)",
    )  # fmt: skip
    b.add_argument(
        "--max-gap", type=_max_gap, default=None, metavar="S",
        help="carry a value forward at most S seconds (inf: no limit; default 3 sample periods)",
    )  # fmt: skip
    b.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE",
        help="a Spark setting, e.g. spark.driver.memory=4g; repeatable",
    )  # fmt: skip
    b.set_defaults(func=_build)


def _max_gap(text: str) -> float:
    """Seconds above zero, or inf."""
    if text.strip().lower() in ("inf", "infinity"):
        return float("inf")
    return positive_float(text)


def specs_of(plants: list[str], given: list[str], spec_dir: Path | None) -> dict:
    """Each plant's spec from ``--spec NAME=FILE`` entries, else ``spec_dir/NAME.toml``."""
    from twin.spec import load_spec, spec_from_arg
    from twin.store.lake import check_plant

    named: dict[str, str] = {}
    for entry in given:
        name, sep, file = entry.partition("=")
        if not sep or not name or not file:
            raise TwinError(f"--spec takes NAME=FILE, got {entry!r}")
        named[check_plant(name)] = file
    unknown = sorted(set(named) - set(plants))
    if unknown:
        raise TwinError(f"--spec names plants that are not built: {unknown} (plants: {plants})")
    specs = {}
    for plant in plants:
        if plant in named:
            specs[plant] = spec_from_arg(named[plant])
        elif spec_dir is not None and (spec_dir / f"{plant}.toml").is_file():
            specs[plant] = load_spec(spec_dir / f"{plant}.toml")
        else:
            where = f" and no {spec_dir / f'{plant}.toml'}" if spec_dir else ""
            raise TwinError(f"no spec for plant {plant!r}: give --spec {plant}=FILE{where}")
    return specs


def _build(args: argparse.Namespace) -> int:
    from twin.scale.spark_frames import build_frames, plan_jobs, require_pyspark, spark_session
    from twin.store.lake import Lake, check_plant

    require_pyspark()
    lake = Lake(args.lake_root)
    if args.plants:
        plants = [check_plant(p.strip()) for p in args.plants.split(",") if p.strip()]
    else:
        plants = lake.plants()
    missing = [p for p in plants if not lake.path(p).is_dir()]
    if not plants or missing:
        raise TwinError(f"lake {lake.root} holds no plant {missing or '(none at all)'}")
    conf = {}
    for entry in args.conf:
        key, sep, value = entry.partition("=")
        if not sep:
            raise TwinError(f"--conf takes KEY=VALUE, got {entry!r}")
        conf[key] = value
    specs = specs_of(plants, args.specs, args.spec_dir)
    jobs = plan_jobs(lake.root, specs, args.start, args.end,
                     max_gap=args.max_gap, chunk_days=args.chunk_days)  # fmt: skip
    from pyspark.sql import SparkSession

    began = time.monotonic()
    running = SparkSession.getActiveSession()  # a caller's session (a notebook, a test): kept
    spark = running or spark_session(args.master, conf)
    try:
        doc = build_frames(spark, lake.root, jobs, args.out)
    finally:
        if running is None:
            spark.stop()
    shards = sum(len(p["shards"]) for p in doc["plants"].values())
    print(
        f"wrote {shards} shards of {len(plants)} plants to {args.out} "
        f"in {time.monotonic() - began:.1f} s (manifest: {args.out / 'manifest.json'})"
    )
    return 0
