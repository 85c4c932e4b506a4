"""``twin evaluate``: score a saved twin against baselines on a historian; write a report."""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from twin.cli.args import aware_time, positive_float

if TYPE_CHECKING:
    from twin.store.historian import Historian

log = logging.getLogger(__name__)

BASELINES = ("persistence", "arx", "subspace", "gru")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="forecast accuracy of a twin against baselines, as a report",
        description="Forecast every complete window of the history with the twin and with "
        "baselines (persistence, ARX, subspace ID, a direct GRU) under the MV moves that really "
        "followed, and write REPORT_DIR/report.json, report.md and forecast.png: NRMSE per CV at "
        "steps 1, 5, 10 and H, and the coverage and width of the twin's band. The baselines "
        "learn from --baseline-start/--baseline-end if given (e.g. the twin's training range); "
        "otherwise from the first --fit-fraction of the evaluated range, and every model is "
        "scored on the rest only.",
    )
    p.add_argument("--model", required=True, type=Path, help="saved twin folder")
    p.add_argument("--historian", required=True, type=Path, metavar="DIR", help="historian")
    p.add_argument("--start", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--end", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--out", required=True, type=Path, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--baseline-start", type=aware_time, metavar="T", help="baselines' data from")
    p.add_argument("--baseline-end", type=aware_time, metavar="T", help="baselines' data until")
    p.add_argument(
        "--fit-fraction",
        type=float,
        default=0.5,
        help="without --baseline-start: share of the range the baselines learn from (0.5)",
    )
    p.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated, from {','.join(BASELINES)} (default: all)",
    )
    p.add_argument(
        "--gru-minutes", type=positive_float, help="GRU training budget (default: the twin's own)"
    )
    p.add_argument("--origins", type=int, default=2000, help="most forecast origins scored")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from twin.errors import DataQualityError
    from twin.evaluate.baseline import Baseline, Persistence
    from twin.evaluate.gru import DirectGRU
    from twin.evaluate.linear import ARX, Subspace
    from twin.evaluate.report import evaluate, parameter_count, write_report
    from twin.model.dataset import split_by_time
    from twin.model.twin import Twin
    from twin.store.historian import Historian

    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        log.error("unknown baselines %s: choose from %s", unknown, list(BASELINES))
        return 2
    if not args.historian.is_dir():
        log.error("no historian at %s", args.historian)
        return 2
    twin = Twin.load(args.model)
    spec, cfg = twin.spec, twin.config
    hist = Historian(args.historian)
    start, end = _range(hist, spec.tag_names, args.start, args.end, spec.sample_period)
    notes = [f"model {args.model}, historian {args.historian}"]
    if args.baseline_start or args.baseline_end:
        b_start, b_end = _range(
            hist, spec.tag_names, args.baseline_start, args.baseline_end, spec.sample_period
        )
        fit = hist.frame(spec, b_start, b_end)
        test = hist.frame(spec, start, end)
        notes.append(f"baselines learnt from {b_start.isoformat()} .. {b_end.isoformat()}")
        if b_start < end and start < b_end:
            notes.append("the baselines' data overlap the test range: their scores are in-sample")
    else:
        if not 0 < args.fit_fraction < 1:
            log.error("--fit-fraction must be between 0 and 1, got %s", args.fit_fraction)
            return 2
        fit, test = split_by_time(
            hist.frame(spec, start, end), (args.fit_fraction, 1 - args.fit_fraction)
        )
        notes.append(
            f"baselines learnt from the first {args.fit_fraction:.0%} of the range; every model "
            "is scored on the rest only. The twin folder does not record its training range: if "
            "the test range overlaps the twin's training data, the twin's scores are in-sample."
        )
    if fit.height == 0 or test.height == 0:
        raise DataQualityError(f"no data in {args.historian} for plant {spec.name!r} in range")
    # the baselines' own train / validation split in the twin's proportions
    share = cfg.fractions[0] / (cfg.fractions[0] + cfg.fractions[1])
    train, val = split_by_time(fit, (share, 1 - share))
    gru_minutes = cfg.minutes if args.gru_minutes is None else args.gru_minutes
    makers: dict[str, type[Baseline]] = {
        "persistence": Persistence,
        "arx": ARX,
        "subspace": Subspace,
    }
    baselines: list[Baseline] = []
    for name in names:
        if name == "gru":
            baselines.append(
                DirectGRU(n_params=parameter_count(twin), minutes=gru_minutes, seed=cfg.seed)
            )
        else:
            baselines.append(makers[name]())
    for b in baselines:
        print(f"fitting {b.name} ...", flush=True)
        b.fit(spec, train, val, horizon=cfg.horizon, window=cfg.window)
    report = evaluate(twin, test, baselines, max_origins=args.origins, notes=notes)
    paths = write_report(report, args.out)
    h = str(cfg.horizon)
    print(f"{spec.name}: NRMSE (mean over CVs) at step 1 and H={h}:")
    for name, row in report["summary"]["nrmse"].items():
        print(f"  {name:12s} {row['1']:.3f}  {row[h]:.3f}")
    cov = report["summary"]["coverage_all_steps"]
    print(f"  band coverage {cov:.1%} (nominal {report['nominal_coverage']:.0%})")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _range(
    hist: Historian, tags: list[str], start: datetime | None, end: datetime | None, period: float
) -> tuple[datetime, datetime]:
    """``[start, end)`` with missing ends taken from the stored data of ``tags``."""
    from twin.errors import DataQualityError

    if start is None or end is None:
        import polars as pl

        row = (
            hist.scan(tags)
            .select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
            .collect()
        )
        lo, hi = row["lo"][0], row["hi"][0]
        if lo is None:
            raise DataQualityError(f"historian {hist.root} holds no samples of tags {tags}")
        start = start or lo
        end = end or hi + timedelta(seconds=period)
    assert start is not None and end is not None
    if start >= end:
        raise DataQualityError(f"empty range: start {start} is not before end {end}")
    return start, end
