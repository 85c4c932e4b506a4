"""Training data for the twin: wide frames to normalised (past, future) windows.

The pipeline, for any plant a spec describes::

    train, val, cal = split_by_time(frame)             # contiguous in time: 70 / 15 / 15 %
    train, val, cal = with_context((train, val, cal), window)  # val, cal: their forecasts' past
    values, ok = frame_to_array(train, spec)            # [T, n_tags] float (NaN = missing), bool
    norm = Normalizer.fit(values, fallback=spans(spec)) # per tag: mean and scale (> 0)
    w = make_windows(values, ok, spec, window=32, horizon=30, normalizer=norm, ts=ts)
    w.past    # [N, W, n_tags]  samples t-W+1 .. t, normalised, every tag in spec order
    w.future  # [N, H, n_tags]  samples t+1 .. t+H, normalised (targets; MV/DV columns = plan)

Columns are always the spec's tags in spec order; :func:`cv_columns`, :func:`mv_columns` and
:func:`dv_columns` give the indices of each role. Index ``t`` is the last observed sample.

Alignment (:data:`twin.spec.MV_TIMING`, stated once in :class:`twin.spec.MvTiming`): the row
``t+1+k`` holds the MV value held over the interval ``(t+k, t+k+1]``, i.e. the move that produced
the CVs measured at ``t+1+k``. So ``future[:, k, mv]`` is the plan entry ``mv_plan[k]`` (the
first, ``k = 0``, is the move made at row ``t``) and ``future[:, k, cv]`` is what that plan leads
to. Frames are always in this timing: ``Historian.frame`` re-times the MVs of a spec whose data
says ``mv_timing = "from_row"``, so the windows here never shift anything. A wide frame built by
hand for such a plant must be re-timed first (its MV columns one row later).

Only windows whose past *and* future are fully valid are kept; :attr:`Windows.dropped` counts
the rest. Nothing here imputes: gaps are the caller's decision (see ``twin.forecast``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from twin.errors import DataQualityError
from twin.spec import PlantSpec

log = logging.getLogger(__name__)

#: suffix of the per-tag Boolean column a frame may carry (True = the sample is usable);
#: ``twin.store.frames`` writes it as ``<tag>__ok``
OK_SUFFIX = "__ok"


@dataclass(frozen=True)
class Normalizer:
    """Per-tag affine normalisation ``z = (x - mean) / scale``, fitted on the training split.

    Arrays are ``[n_tags]`` in spec order; ``norm``/``denorm`` take numpy arrays or torch
    tensors whose last axis is the spec's tags.
    """

    mean: np.ndarray
    scale: np.ndarray
    std: np.ndarray | None = None
    """the raw standard deviation per column from :meth:`fit`, before a tiny one is replaced by
    the fallback: how much each tag moved in the training data (None: a normaliser saved before
    it was kept, or not fitted)"""

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        fallback: np.ndarray | None = None,
        names: Sequence[str] | None = None,
    ) -> Normalizer:
        """Mean and std per column of ``values`` ``[T, n_tags]`` (NaN ignored).

        ``names`` (the tags of the columns) name a column without any valid sample in the error.

        A column that barely moves (std below 1e-6 of ``fallback``, or zero) gets ``fallback``
        (e.g. ``0.1 * span``) as its scale, or 1.0 without one, so every scale is > 0; ``std``
        keeps the std itself.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"values must be [T, n_tags], got shape {values.shape}")
        finite = np.isfinite(values)
        empty = ~finite.any(axis=0)
        if empty.any():
            idx = np.flatnonzero(empty).tolist()
            which = f"tags {[names[i] for i in idx]}" if names is not None else f"columns {idx}"
            raise DataQualityError(
                f"cannot normalise: {which} have no valid sample (are they in the data? "
                "'twin import' names the spec's tags missing from an export)"
            )
        safe = np.where(finite, values, 0.0)
        count = finite.sum(axis=0)
        mean = safe.sum(axis=0) / count
        var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count - 1, 1)
        std = np.sqrt(var)
        fb = np.ones_like(std) if fallback is None else np.asarray(fallback, dtype=np.float64)
        scale = np.where((std > 1e-6 * fb) & (std > 0), std, fb)
        return cls(mean=mean, scale=scale, std=std)

    def norm(self, x: Any) -> Any:
        """Engineering units to normalised units (numpy or torch; last axis = tags)."""
        mean, scale = self._like(x)
        return (x - mean) / scale

    def denorm(self, z: Any) -> Any:
        """Normalised units back to engineering units (numpy or torch; last axis = tags)."""
        mean, scale = self._like(z)
        return z * scale + mean

    def subset(self, columns: list[int]) -> Normalizer:
        """The normaliser of some columns only (e.g. the MVs), in the order given."""
        std = None if self.std is None else self.std[columns]
        return Normalizer(mean=self.mean[columns], scale=self.scale[columns], std=std)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain data for JSON (``std`` only when known)."""
        out = {"mean": self.mean.tolist(), "scale": self.scale.tolist()}
        if self.std is not None:
            out["std"] = self.std.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Normalizer:
        """Inverse of :meth:`to_dict`; a dict without ``std`` (an older normaliser) reads too."""
        mean, scale = np.asarray(d["mean"], float), np.asarray(d["scale"], float)
        std = np.asarray(d["std"], float) if d.get("std") is not None else None
        if len(scale) != len(mean) or (std is not None and len(std) != len(mean)):
            raise ValueError(
                f"mean, scale and std must have one entry per tag, got {len(mean)}, "
                f"{len(scale)} and {'none' if std is None else len(std)}"
            )
        return cls(mean=mean, scale=scale, std=std)

    def _like(self, x: Any) -> tuple[Any, Any]:
        if isinstance(x, np.ndarray | float | int):
            return self.mean, self.scale
        import torch  # only when asked to work on tensors

        kw = {"dtype": x.dtype, "device": x.device}
        return torch.as_tensor(self.mean, **kw), torch.as_tensor(self.scale, **kw)


@dataclass(frozen=True)
class Windows:
    """Normalised training windows; index ``t`` is the last observed sample of each window."""

    past: np.ndarray
    """``[N, W, n_tags]`` samples ``t-W+1 .. t``, every spec tag in spec order"""
    future: np.ndarray
    """``[N, H, n_tags]`` samples ``t+1 .. t+H`` (targets; MV and DV columns = plan / known DVs)"""
    ts: np.ndarray
    """``[N]`` the timestamp of sample ``t`` (datetime64[us]) or its row index without one"""
    dropped: int = field(default=0)
    """windows left out because a sample in their past or future was missing or bad"""

    def __len__(self) -> int:
        return len(self.past)


def evenly(windows: Windows, n: int) -> Windows:
    """At most ``n`` of ``windows``, evenly spaced in time (all of them if there are fewer).

    Neighbouring windows share all but one sample, so on a long history a validation or
    calibration split says hardly more with all its windows than with a few thousand of them,
    and forecasting every one (with every ensemble member, for every part of a stack) is what
    made a 7-day history overrun the training budget.
    """
    if len(windows) <= n:
        return windows
    take = np.linspace(0, len(windows) - 1, n).round().astype(int)
    return Windows(windows.past[take], windows.future[take], windows.ts[take], windows.dropped)


def cv_columns(spec: PlantSpec) -> list[int]:
    """Indices of the CV tags in spec order."""
    return [i for i, t in enumerate(spec.tags) if t.role == "cv"]


def mv_columns(spec: PlantSpec) -> list[int]:
    """Indices of the MV tags in spec order."""
    return [i for i, t in enumerate(spec.tags) if t.role == "mv"]


def dv_columns(spec: PlantSpec) -> list[int]:
    """Indices of the DV tags in spec order."""
    return [i for i, t in enumerate(spec.tags) if t.role == "dv"]


def clock_columns(spec: PlantSpec) -> list[int]:
    """Indices of the DV tags that are clocks (their future is known: see :func:`dv_future`)."""
    return [i for i, t in enumerate(spec.tags) if t.role == "dv" and t.clock_step is not None]


def dv_future(spec: PlantSpec, last: np.ndarray, steps: int) -> np.ndarray:
    """The DVs ``[..., steps, n_dv]`` (eng. units) a forecast assumes after ``last [..., n_dv]``.

    A DV's future is unknown, so it is held at its last value; a clock (``clock_step`` in the
    spec) counts on, ``clock_step`` a sample, and past ``clock_reset`` starts again from ``lo``
    (values in ``(lo, clock_reset]``: a 90-min batch clock in minutes runs 89, 90, 1, 2, ...).
    A count within a ten-thousandth of the period above the reset is the reset value itself
    (``last`` may come back from float32 a hair off: 89.00001 + 1 must still read 90).
    """
    last = np.asarray(last, dtype=np.float64)
    out = np.repeat(last[..., None, :], steps, axis=-2)
    k = np.arange(1, steps + 1, dtype=np.float64)
    for j, tag in enumerate(spec.dvs):
        if tag.clock_step is None:
            continue
        count = last[..., j, None] + tag.clock_step * k
        if tag.clock_reset is not None:
            period = tag.clock_reset - tag.lo
            wraps = np.ceil((count - tag.clock_reset - 1e-4 * period) / period)
            count = count - period * np.maximum(wraps, 0.0)
        out[..., j] = count
    return out


def spans(spec: PlantSpec) -> np.ndarray:
    """``hi - lo`` of every tag ``[n_tags]``: the scale of last resort for a flat tag."""
    return np.array([t.span for t in spec.tags], dtype=np.float64)


def ok_column(frame: pl.DataFrame, tag: str) -> str | None:
    """The name of ``tag``'s Boolean good-sample column in ``frame``, if it has one."""
    name = f"{tag}{OK_SUFFIX}"
    return name if name in frame.columns and frame.schema[name] == pl.Boolean else None


def frame_to_array(frame: pl.DataFrame, spec: PlantSpec) -> tuple[np.ndarray, np.ndarray]:
    """A wide frame to ``values [T, n_tags]`` (float64, NaN where missing) and ``ok [T, n_tags]``.

    A sample is ok when its value is present and finite and, where the frame has a Boolean
    good-sample column for the tag, that column is True. Missing tag columns raise
    :class:`DataQualityError` naming them.
    """
    missing = [name for name in spec.tag_names if name not in frame.columns]
    if missing:
        raise DataQualityError(
            f"frame lacks the columns of tags {missing} of plant {spec.name!r} "
            f"(it has {frame.columns})"
        )
    # one select (not a cast per tag): at 53 tags this is the app's refresh cost (0.5 s -> 0.03 s)
    schema = frame.schema
    masks = [
        pl.col(f"{name}{OK_SUFFIX}").fill_null(False)
        if schema.get(f"{name}{OK_SUFFIX}") == pl.Boolean
        else pl.lit(True)
        for name in spec.tag_names
    ]
    both = frame.select(
        *(pl.col(name).cast(pl.Float64).alias(f"v{j}") for j, name in enumerate(spec.tag_names)),
        *(mask.alias(f"m{j}") for j, mask in enumerate(masks)),
    )
    n = len(spec.tag_names)
    if frame.height == 0:
        return np.empty((0, n)), np.empty((0, n), dtype=bool)
    values = both.select(both.columns[:n]).to_numpy().astype(np.float64, copy=True)
    ok = np.isfinite(values) & both.select(both.columns[n:]).to_numpy().astype(bool)
    values[~ok] = np.nan
    return values, ok


def frame_ts(frame: pl.DataFrame) -> np.ndarray:
    """The ``ts`` column as ``datetime64[us]`` ``[T]``; DataQualityError if there is none."""
    if "ts" not in frame.columns:
        raise DataQualityError(f"frame has no 'ts' column (it has {frame.columns})")
    return frame.get_column("ts").dt.replace_time_zone(None).cast(pl.Datetime("us")).to_numpy()


def make_windows(
    values: np.ndarray,
    ok: np.ndarray,
    spec: PlantSpec,
    window: int,
    horizon: int,
    normalizer: Normalizer,
    stride: int = 1,
    ts: np.ndarray | None = None,
) -> Windows:
    """Every (past, future) pair of ``values`` whose ``window + horizon`` samples are all ok.

    ``values``/``ok`` are ``[T, n_tags]`` on a regular grid (from :func:`frame_to_array`);
    ``ts`` ``[T]`` their timestamps (optional). Windows start every ``stride`` samples.
    """
    values = np.asarray(values, dtype=np.float64)
    ok = np.asarray(ok, dtype=bool)
    n_tags = len(spec.tags)
    if values.ndim != 2 or values.shape[1] != n_tags or ok.shape != values.shape:
        raise ValueError(
            f"values and ok must be [T, {n_tags}] for plant {spec.name!r}, "
            f"got {values.shape} and {ok.shape}"
        )
    if window < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"window, horizon, stride must be >= 1, got {window}, {horizon}, {stride}")
    span = window + horizon
    n_tags = values.shape[1]
    empty = np.zeros((0, window, n_tags), np.float32), np.zeros((0, horizon, n_tags), np.float32)
    if len(values) < span:
        return Windows(empty[0], empty[1], np.zeros(0, dtype="datetime64[us]"), dropped=0)
    # a window is valid when every sample in its span is ok: a running count of bad rows
    bad_row = ~ok.all(axis=1)
    bad_count = np.concatenate([[0], np.cumsum(bad_row)])
    starts = np.arange(0, len(values) - span + 1, stride)
    valid = (bad_count[starts + span] - bad_count[starts]) == 0
    dropped = int((~valid).sum())
    starts = starts[valid]
    z = normalizer.norm(np.where(ok, values, 0.0)).astype(np.float32)
    idx = starts[:, None] + np.arange(span)[None, :]
    seq = z[idx]  # [N, W+H, n_tags]
    last = starts + window - 1
    stamps = ts[last] if ts is not None else last
    if dropped:
        log.info(
            "make_windows: kept %d windows, dropped %d with missing or bad samples",
            len(starts),
            dropped,
        )
    return Windows(
        past=np.ascontiguousarray(seq[:, :window]),
        future=np.ascontiguousarray(seq[:, window:]),
        ts=stamps,
        dropped=dropped,
    )


def split_by_time(
    frame: pl.DataFrame, fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
) -> tuple[pl.DataFrame, ...]:
    """Contiguous splits in time order (train, validation, calibration by default).

    ``fractions`` must be positive and sum to 1; the frame is sorted by ``ts`` first.
    """
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    if "ts" in frame.columns:
        frame = frame.sort("ts")
    n = frame.height
    edges = np.round(np.cumsum((0.0, *fractions)) * n).astype(int)
    return tuple(frame.slice(int(a), int(b - a)) for a, b in itertools.pairwise(edges))


def with_context(parts: Sequence[pl.DataFrame], window: int) -> tuple[pl.DataFrame, ...]:
    """Each split after the first preceded by the last ``window`` rows of the split before it.

    A window's past is conditioning, not a target: the forecasts made at a split's first rows
    take their past from the end of the split before, and only the split's own rows are ever
    forecast. So a validation or calibration split of ``n`` rows holds ``n - horizon + 1``
    windows instead of ``n - window - horizon + 1``: on a short history (6 h of 1-min samples,
    54 rows of validation for ``window + horizon = 54``) that is 25 windows instead of one.
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    out = [parts[0]]
    for before, part in itertools.pairwise(parts):
        out.append(pl.concat([before.tail(window), part], how="vertical_relaxed"))
    return tuple(out)


def split_with_context(
    frame: pl.DataFrame, fractions: tuple[float, ...], window: int
) -> tuple[pl.DataFrame, ...]:
    """:func:`split_by_time`, then :func:`with_context`: the splits the twin fits on (the
    benchmarks fit the baselines on the same ones)."""
    return with_context(split_by_time(frame, fractions), window)
