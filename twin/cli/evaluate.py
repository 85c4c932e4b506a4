"""``twin evaluate``: score a saved twin against baselines on a historian; write a report."""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.cli.args import add_historian_arg, aware_time, positive_float

if TYPE_CHECKING:
    import polars as pl

    from twin.model.provenance import TrainingData
    from twin.model.twin import Twin
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
        "steps 1, 5, 10 and H, and the coverage (per tag and step) and width of the twin's band. "
        "The baselines learn from --baseline-start/--baseline-end if given; else from the first "
        "--fit-fraction of the evaluated range if given; else from the data the twin was trained "
        "on (its folder records the historian and range; the test range then starts after it). "
        "A baseline that cannot be fitted is reported as skipped, with the reason.",
    )
    p.add_argument("--model", required=True, type=Path, help="saved twin folder")
    add_historian_arg(p, help="test historian")
    p.add_argument("--start", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--end", type=aware_time, metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--out", required=True, type=Path, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--baseline-start", type=aware_time, metavar="T", help="baselines' data from")
    p.add_argument("--baseline-end", type=aware_time, metavar="T", help="baselines' data until")
    p.add_argument(
        "--fit-fraction",
        type=float,
        help="the baselines learn from this first share of the evaluated range, and every model "
        "is scored on the rest (default: the twin's training data; 0.5 for older model folders)",
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
    from twin.evaluate.baseline import Baseline, Persistence, try_fit
    from twin.evaluate.gru import DirectGRU
    from twin.evaluate.linear import ARX, Subspace
    from twin.evaluate.render import write_report
    from twin.evaluate.report import evaluate, forecast_cases, parameter_count
    from twin.model.dataset import split_with_context
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
    if args.fit_fraction is not None and not 0 < args.fit_fraction < 1:
        log.error("--fit-fraction must be between 0 and 1, got %s", args.fit_fraction)
        return 2
    twin = Twin.load(args.model)
    spec, cfg = twin.spec, twin.config
    hist = Historian(args.historian)
    start, end = _range(hist, spec.tag_names, args.start, args.end, spec.sample_period)
    fit, test, notes = _split(args, twin, hist, start, end)
    notes.insert(0, f"model {args.model}, test historian {args.historian}")
    forecast_cases(test, spec, cfg.window, cfg.horizon, max_origins=1)  # too short: say so now
    # the baselines' own train / validation split in the twin's proportions
    share = cfg.fractions[0] / (cfg.fractions[0] + cfg.fractions[1])
    train, val = split_with_context(fit, (share, 1 - share), cfg.window)
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
    print("\n".join(notes[1:]), flush=True)
    fitted, skipped = [], {}
    for b in baselines:
        print(f"fitting {b.name} ...", flush=True)
        reason = try_fit(b, spec, train, val, horizon=cfg.horizon, window=cfg.window)
        if reason is None:
            fitted.append(b)
            for note in b.notes_:
                print(f"  {b.describe()}: {note}", flush=True)
        else:
            skipped[b.name] = reason
            print(f"  {b.name} skipped: {reason}", flush=True)
    report = evaluate(twin, test, fitted, max_origins=args.origins, notes=notes, skipped=skipped)
    paths = write_report(report, args.out)
    _print_summary(report)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _split(
    args: argparse.Namespace, twin: Twin, hist: Historian, start: datetime, end: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """The baselines' data, the test data, and notes that say where both came from."""
    from twin.model.dataset import split_by_time
    from twin.model.provenance import read_training_data

    spec = twin.spec
    trained = read_training_data(twin.metrics)
    if args.baseline_start or args.baseline_end:
        b_start, b_end = _range(
            hist, spec.tag_names, args.baseline_start, args.baseline_end, spec.sample_period
        )
        notes = [f"baselines learnt from {b_start.isoformat()} .. {b_end.isoformat()}"]
        if b_start < end and start < b_end:
            notes.append("the baselines' data overlap the test range: their scores are in-sample")
        return hist.frame(spec, b_start, b_end), hist.frame(spec, start, end), notes
    if args.fit_fraction is None and trained is not None:
        fit, source = _training_frame(twin, trained, hist)
        if fit is not None:
            notes = [
                f"baselines learnt from the twin's training data: {source}, "
                f"{trained.start.isoformat()} .. {trained.end.isoformat()}"
            ]
            if args.start is None and trained.start <= start < trained.end < end:
                start = trained.end
                notes.append(
                    f"test range starts where the twin's training data end ({start.isoformat()})"
                )
            notes += _in_sample(start, end, trained)
            return fit, hist.frame(spec, start, end), notes
        notes = [
            f"the twin's training data ({trained.historian or 'historian not recorded'}, "
            f"{trained.start.isoformat()} .. {trained.end.isoformat()}) are not there any more: "
            "fell back to --fit-fraction 0.5"
        ]
    else:
        notes = []
    fraction = 0.5 if args.fit_fraction is None else args.fit_fraction
    fit, test = split_by_time(hist.frame(spec, start, end), (fraction, 1 - fraction))
    notes.insert(
        0,
        f"baselines learnt from the first {fraction:.0%} of the range; every model is scored "
        "on the rest only.",
    )
    if trained is None:
        notes.append(
            "The twin folder does not record its training range: if the test range overlaps the "
            "twin's training data, the twin's scores are in-sample."
        )
    elif test.height:
        t0, t1 = test.get_column("ts").min(), test.get_column("ts").max()
        notes += _in_sample(t0, t1, trained)  # type: ignore[arg-type]
    return fit, test, notes


def _training_frame(
    twin: Twin, trained: TrainingData, hist: Historian
) -> tuple[pl.DataFrame | None, str]:
    """The twin's training range from the historian it was trained on if that still holds it,
    else from the test historian ``hist``; ``(None, "")`` if neither does."""
    from twin.model.dataset import frame_to_array
    from twin.store.historian import Historian

    own = Path(trained.historian) if trained.historian else None
    sources = [(Historian(own), f"historian {own}")] if own and own.is_dir() else []
    if not sources or own is None or own.resolve() != hist.root.resolve():
        why = "" if own is None else f", as {own} does not hold it any more"
        sources.append((hist, f"the test historian {hist.root}{why}"))
    for source, where in sources:
        frame = source.frame(twin.spec, trained.start, trained.end)
        _, ok = frame_to_array(frame, twin.spec)
        if ok.all(axis=1).any():
            return frame, where
    return None, ""


def _in_sample(start: datetime, end: datetime, trained: TrainingData) -> list[str]:
    """A note if the test range ``[start, end)`` overlaps the twin's training data."""
    if start < trained.end and trained.start < end:
        return ["the test range overlaps the twin's training data: the twin's scores are in-sample"]
    return []


def _print_summary(report: dict[str, Any]) -> None:
    """NRMSE at step 1 and H per model, skipped baselines, band coverage per tag."""
    h = str(report["horizon"])
    print(f"{report['plant']}: NRMSE (mean over CVs) at step 1 and H={h}:")
    for name, row in report["summary"]["nrmse"].items():
        print(f"  {name:12s} {row['1']:.3f}  {row[h]:.3f}")
    for name, reason in report["skipped"].items():
        print(f"  {name:12s} skipped: {reason}")
    lo, hi = report["coverage_range"]
    print(
        f"band coverage {report['summary']['coverage_all_steps']:.1%} over all tags (nominal "
        f"{report['nominal_coverage']:.0%}); per tag, all steps / lowest step (expected "
        f"{lo:.0%}-{hi:.0%}):"
    )
    for tag, d in report["tags"].items():
        low, flag = d["coverage_min"], d["coverage_flag"]
        print(
            f"  {tag:12s} {d['coverage_all_steps']:.1%} / {low['value']:.1%} at k={low['step']}"
            + (f"  <- {flag}" if flag else "")
        )


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
