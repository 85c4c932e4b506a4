"""The Twin: fit from a history frame, save and load a folder, forecast with a calibrated band.

    twin = Twin.fit(spec, frame, TwinConfig(minutes=2))   # frame: Historian.frame(...)
    twin.save("models/cstr")
    twin = Twin.load("models/cstr", spec=spec)             # refuses a spec that does not match
    fc = twin.forecast(history, mv_plan)                   # mv_plan [H, n_mv], eng. units
    fc.mean, fc.lower, fc.upper                            # [H, n_tags], eng. units

For a controller, :meth:`Twin.torch_rollout` is the same forecast as a differentiable torch
function of the MV plan, and :meth:`Twin.past_tensor` builds its input from a history frame.

A saved folder holds ``model.pt`` (weights), ``config.json``, ``spec.toml``,
``normalizer.json`` (mean, scale and training std per tag), ``calibration.json``,
``metrics.json`` (validation NRMSE per tag at steps 1, 5, 10, H against persistence; band
coverage; training data range) and ``checksums.json`` (SHA-256 of the weights and JSON files: a
load refuses one damaged or replaced since, naming it): :mod:`twin.model.saved` reads and
checks them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from twin.errors import DataQualityError, SpecError, TwinError
from twin.model import distributed, provenance, stack, time_scales
from twin.model.dataset import (
    Normalizer,
    Windows,
    clock_columns,
    cv_columns,
    dv_columns,
    dv_future,
    evenly,
    frame_to_array,
    frame_ts,
    make_windows,
    mv_columns,
    spans,
    split_by_time,
    with_context,
)
from twin.model.forecast import Calibration, Forecast, history_window
from twin.model.linear_init import fit_network
from twin.model.network import TwinConfig
from twin.model.saved import (
    CHECKSUMMED,
    CHECKSUMS,
    FILES,
    _from_json,
    _read_json,
    _sha256,
    _verify_checksums,
    _write_json,
)
from twin.model.train import nrmse_per_step, predict, resolve_device, torch_threads
from twin.spec import PlantSpec, load_spec, spec_difference, spec_to_toml

log = logging.getLogger(__name__)

#: the normaliser's scale of a tag that did not move in the training data, as a fraction of its
#: span (``hi - lo``): ``Normalizer.fit``'s fallback
FLAT_SCALE = 0.1
#: an MV whose training-data standard deviation is below this fraction of its span never really
#: moved: the twin cannot know its effect, so the controller holds it (``Twin.unmoved_mvs``).
#: A tenth of the flat-tag scale above: sensor noise on a held MV stays below it, deliberate steps
#: of a few percent of the span do not
UNMOVED_SPREAD = 0.005
#: validation and calibration windows kept (evenly spaced) from a long history: on 7 days of
#: 5-s samples (18,000 windows a split) forecasting all of them took 55 s after the budget
HELD_WINDOWS = 4000


class Twin:
    """A trained latent dynamics model of one plant, with its normaliser and calibrated band."""

    def __init__(
        self,
        spec: PlantSpec,
        config: TwinConfig,
        normalizer: Normalizer,
        model: stack.Part | stack.Stacked,
        calibration: Calibration,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.normalizer = normalizer
        self.model = model.cpu().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.calibration = calibration
        self.metrics = metrics or {}
        self.mv_cols, self.dv_cols = mv_columns(spec), dv_columns(spec)
        self.clock_cols = clock_columns(spec)
        self._known = torch.zeros(len(spec.tags), dtype=torch.bool)
        self._known[self.mv_cols + self.dv_cols] = True
        self._mv_mask = torch.zeros(len(spec.tags), dtype=torch.bool)
        self._mv_mask[self.mv_cols] = True
        self._mean = torch.as_tensor(normalizer.mean, dtype=torch.float32)
        self._scale = torch.as_tensor(normalizer.scale, dtype=torch.float32)
        self._q = torch.as_tensor(calibration.quantile, dtype=torch.float32)

    @property
    def horizon(self) -> int:
        """The longest plan the twin forecasts (the H it was trained and calibrated for)."""
        return self.config.horizon

    @property
    def window(self) -> int:
        """Past samples a forecast starts from."""
        return self.config.window

    def unmoved_mvs(self, threshold: float = UNMOVED_SPREAD) -> tuple[str, ...]:
        """The MVs (spec order) whose training-data std is below ``threshold * (hi - lo)``.

        The twin has not learnt what moving them does. A folder saved before the normaliser kept
        the std has only the scale, which is the std unless the tag was flat, when it is the
        fallback ``FLAT_SCALE * span`` exactly: either counts as unmoved.
        """
        cols = self.mv_cols
        span = spans(self.spec)[cols]
        norm = self.normalizer
        if norm.std is not None:
            still = norm.std[cols] < threshold * span
        else:
            scale = norm.scale[cols]
            still = (scale < threshold * span) | (scale == FLAT_SCALE * span)
        return tuple(self.spec.tags[j].name for j, s in zip(cols, still, strict=True) if s)

    # --- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        spec: PlantSpec,
        frame: pl.DataFrame,
        config: TwinConfig | None = None,
        *,
        progress: bool = True,
    ) -> Twin:
        """Train on a wide frame (``Historian.frame``): 70 % train, 15 % validation, 15 % cal."""
        cfg = config or TwinConfig()
        plain = split_by_time(frame, cfg.fractions)
        train_values, _ = frame_to_array(plain[0], spec)
        norm = Normalizer.fit(train_values, fallback=FLAT_SCALE * spans(spec), names=spec.tag_names)
        scales = None
        if cfg.time_scales != "given":
            scales = time_scales.choose(spec, with_context(plain, cfg.window), cfg, norm)
            cfg = scales[0]
        parts = with_context(plain, cfg.window)  # validation and calibration: their past too
        train, val, cal = (_windows(p, spec, cfg, norm) for p in parts)
        val, cal = evenly(val, HELD_WINDOWS), evenly(cal, HELD_WINDOWS)
        for name, w in (("training", train), ("validation", val), ("calibration", cal)):
            if len(w) == 0:
                raise DataQualityError(
                    f"the {name} split has no gap-free stretch of window + horizon = "
                    f"{cfg.window + cfg.horizon} samples ({w.dropped} windows had gaps); "
                    "record more data or lower window/horizon"
                )
        log.info(
            "fit %s: %d / %d / %d windows (train / val / cal), %d dropped for gaps",
            spec.name,
            len(train),
            len(val),
            len(cal),
            train.dropped + val.dropped + cal.dropped,
        )
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        device = resolve_device(cfg.device)
        with torch_threads(cfg.threads):
            fitted = fit_network(spec, parts, norm, train, val, cfg, device, progress=progress)
            result, cfg, linear = fitted.result, fitted.cfg, fitted.record
            model: stack.Part | stack.Stacked = fitted.model
            if cfg.stack and linear is not None and fitted.identified:
                model, cfg, linear["stack"] = stack.combine(fitted, spec, parts[0], val, norm)
            # fitted on validation + calibration windows; metrics state its held-out check
            clocks = clock_columns(spec)
            held = [
                (*predict(model, w.past, w.future, clocks=clocks), w.future) for w in (val, cal)
            ]
            calibration = Calibration.fit_splits(held, cfg.coverage, cfg.band_score)
            twin = cls(spec, cfg, norm, model, calibration)
            twin.metrics = twin.evaluate_windows(val)
            twin.metrics.update(calibration.coverage_summary(cv_columns(spec), twin.metrics))
        twin.metrics["training"] = {
            "seconds": round(result.seconds, 1),
            "epochs": result.epochs,
            "steps": result.steps,
            "stopped": result.stopped,
            "reason": result.reason,
            "best_epoch": result.best_epoch,
            "windows": {"train": len(train), "validation": len(val), "calibration": len(cal)},
            "calibration_score": calibration.score,
            "processes": distributed.world_size(),  # > 1: data-parallel under torchrun
        }
        if linear is not None:
            twin.metrics["linear_init"] = linear
        if scales:
            twin.metrics["time_scales"] = scales[1]
        twin.metrics[provenance.KEY] = provenance.training_record(frame, plain, spec.sample_period)
        return twin

    def evaluate_windows(self, windows: Windows) -> dict[str, Any]:
        """NRMSE per tag at steps 1, 5, 10, H (model and persistence) and band coverage.

        NRMSE = RMSE / the tag's standard deviation on the training split. Forecasts hold the
        DVs at their last value (clocks counted on), as a live forecast does.
        """
        mean, std = predict(self.model, windows.past, windows.future, clocks=self.clock_cols)
        err = nrmse_per_step(mean, windows.future)
        pers = nrmse_per_step(np.repeat(windows.past[:, -1:], self.horizon, 1), windows.future)
        covered, _ = self.calibration.evaluate(mean, std, windows.future)
        steps = sorted({s for s in (1, 5, 10, self.horizon) if s <= self.horizon})
        cvs = cv_columns(self.spec)
        names = [self.spec.tags[j].name for j in cvs]
        return {
            "split": "validation",
            "windows": len(windows),
            "nrmse": {
                str(s): dict(
                    zip(names, err[s - 1, cvs].astype(float).round(5).tolist(), strict=True)
                )
                for s in steps
            },
            "persistence_nrmse": {
                str(s): dict(
                    zip(names, pers[s - 1, cvs].astype(float).round(5).tolist(), strict=True)
                )
                for s in steps
            },
            "coverage": {str(s): round(float(covered[:, s - 1, cvs].mean()), 4) for s in steps},
            "coverage_all": round(float(covered[..., cvs].mean()), 4),
        }

    # --- saving ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the twin's folder (created if needed); returns its path."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), out / "model.pt")
        _write_json(out / "config.json", self.config.to_dict())
        (out / "spec.toml").write_text(spec_to_toml(self.spec), encoding="utf-8")
        _write_json(out / "normalizer.json", self.normalizer.to_dict())
        _write_json(out / "calibration.json", self.calibration.to_dict())
        _write_json(out / "metrics.json", self.metrics)
        _write_json(out / CHECKSUMS, {name: _sha256(out / name) for name in CHECKSUMMED})
        log.info("saved twin of %s to %s", self.spec.name, out)
        return out

    @classmethod
    def load(cls, path: str | Path, spec: PlantSpec | None = None) -> Twin:
        """Read a saved folder; with ``spec``, refuse (SpecError) a twin made for other tags."""
        folder = Path(path)
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise TwinError(f"{folder} is not a saved twin: it lacks {missing}")
        _verify_checksums(folder)
        saved = load_spec(folder / "spec.toml")
        if spec is not None:
            diff = spec_difference(saved, spec)
            if diff:
                raise SpecError(
                    f"the twin in {folder} was trained for a different plant spec: {diff}",
                    file=spec.source,
                )
        cfg = _from_json(folder / "config.json", TwinConfig.from_dict)
        norm = _from_json(folder / "normalizer.json", Normalizer.from_dict)
        try:
            model = stack.build_model(cfg, len(saved.tags), mv_columns(saved), dv_columns(saved))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TwinError(f"{folder}/config.json holds unusable settings: {exc}") from exc
        try:
            state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises a different type per kind of damage
            raise TwinError(
                f"{folder}/model.pt is not a readable weights file: damaged, or not written by "
                f"Twin.save ({type(exc).__name__})"
            ) from exc
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise TwinError(f"{folder}/model.pt does not match its config.json: {exc}") from exc
        calibration = _from_json(folder / "calibration.json", Calibration.from_dict)
        metrics_file = folder / "metrics.json"
        metrics = _read_json(metrics_file) if metrics_file.is_file() else {}
        if not isinstance(metrics, dict):
            raise TwinError(f"{metrics_file} must hold a JSON object, got {type(metrics).__name__}")
        return cls(spec or saved, cfg, norm, model, calibration, metrics)

    # --- forecasting -----------------------------------------------------------------------

    def history_window(self, history: pl.DataFrame) -> tuple[np.ndarray, np.datetime64]:
        """The last W samples ``[W, n_tags]`` (eng. units, short gaps carried forward), last ts."""
        return history_window(history, self.spec, self.window, self.config.max_gap)

    def past_tensor(self, history: pl.DataFrame) -> Tensor:
        """The normalised past ``[W, n_tags]`` float32 tensor that :meth:`torch_rollout` takes."""
        values, _ = self.history_window(history)
        return torch.as_tensor(self.normalizer.norm(values), dtype=torch.float32)

    def torch_rollout(
        self, past_norm: Tensor, mv_plan: Tensor, dv_plan: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Differentiable forecast: ``(mean, halfwidth)`` ``[..., H', n_tags]``, eng. units.

        ``past_norm``: ``[W, n_tags]`` or ``[B, W, n_tags]`` (from :meth:`past_tensor`);
        ``mv_plan``: ``[H', n_mv]`` or ``[B, H', n_mv]`` engineering units, ``H' <= H``;
        ``dv_plan`` likewise ``[..., H', n_dv]`` (default: the last DV values held, clocks
        counted on: :func:`~twin.model.dataset.dv_future`).
        The band is ``mean ± halfwidth``; gradients flow from both to ``mv_plan``.
        """
        past = past_norm.unsqueeze(0) if past_norm.dim() == 2 else past_norm
        plan = mv_plan.unsqueeze(0) if mv_plan.dim() == 2 else mv_plan
        steps = plan.shape[-2]
        if steps > self.horizon or steps < 1:
            raise TwinError(
                f"plan has {steps} steps; this twin forecasts 1 to {self.horizon} (its horizon)"
            )
        if plan.shape[-1] != len(self.mv_cols):
            raise TwinError(
                f"plan has {plan.shape[-1]} MV columns; plant {self.spec.name!r} has "
                f"{len(self.mv_cols)} MVs {[self.spec.tags[j].name for j in self.mv_cols]}"
            )
        if not bool(torch.isfinite(past).all()):
            raise DataQualityError(
                "past window holds NaN or inf: build it with Twin.past_tensor, which carries "
                "short gaps forward and refuses long ones"
            )
        batch = max(past.shape[0], plan.shape[0])
        past = past.to(torch.float32).expand(batch, -1, -1)
        future = past[:, -1:, :].expand(batch, steps, -1).clone()
        mv = self.mv_cols
        future[..., mv] = (plan.to(torch.float32) - self._mean[mv]) / self._scale[mv]
        if dv_plan is None and self.clock_cols:
            dvs = self.normalizer.subset(self.dv_cols)
            last = dvs.denorm(past[:, -1, self.dv_cols].detach().double().cpu().numpy())
            dv_plan = torch.as_tensor(dv_future(self.spec, last, steps))
        if dv_plan is not None and self.dv_cols:
            dv = self.dv_cols
            dvp = dv_plan.unsqueeze(0) if dv_plan.dim() == 2 else dv_plan
            future[..., dv] = (dvp.to(torch.float32) - self._mean[dv]) / self._scale[dv]
        y = self.model.rollout(past, future).y  # [K, B, H', n]
        y = torch.where(self._known, future.unsqueeze(0), y)
        mean = y.mean(0)
        std = (y.var(0, unbiased=False) + 1e-12).sqrt()
        q = self._q[:steps]
        half = (
            q * (std + self.calibration.eps) if self.calibration.score == "scaled" else q + 0 * std
        )
        half = torch.where(self._mv_mask, 0.0, half)
        mean_eng, half_eng = mean * self._scale + self._mean, half * self._scale
        if past_norm.dim() == 2 and mv_plan.dim() == 2:
            return mean_eng[0], half_eng[0]
        return mean_eng, half_eng

    def forecast(self, history: pl.DataFrame, mv_plan: Any, dv_plan: Any | None = None) -> Forecast:
        """Forecast every tag over the plan: ``mv_plan [H', n_mv]`` eng. units (``H' <= H``)."""
        values, last_ts = self.history_window(history)
        plan = np.asarray(mv_plan, dtype=np.float64)
        if plan.ndim == 1 and len(self.mv_cols) == 1:
            plan = plan[:, None]
        if plan.ndim != 2 or not np.isfinite(plan).all():
            raise TwinError(
                f"mv_plan must be a finite [H, {len(self.mv_cols)}] array, got {plan.shape}"
            )
        dv = (
            None
            if dv_plan is None
            else torch.as_tensor(np.asarray(dv_plan, float).reshape(len(plan), -1))
        )
        past = torch.as_tensor(self.normalizer.norm(values), dtype=torch.float32)
        with torch.no_grad():
            mean, half = self.torch_rollout(past, torch.as_tensor(plan), dv)
        mean_np, half_np = mean.double().numpy(), half.double().numpy()
        period = np.timedelta64(round(self.spec.sample_period * 1e6), "us")
        ts = last_ts + period * np.arange(1, len(plan) + 1)
        mean_np[:, self.mv_cols] = plan  # exactly the plan, not a float32 round trip
        return Forecast(
            tags=tuple(self.spec.tag_names),
            units=tuple(t.unit for t in self.spec.tags),
            ts=ts,
            mean=mean_np,
            lower=mean_np - half_np,
            upper=mean_np + half_np,
            coverage=self.calibration.coverage,
        )


def _windows(frame: pl.DataFrame, spec: PlantSpec, cfg: TwinConfig, norm: Normalizer) -> Windows:
    values, ok = frame_to_array(frame, spec)
    return make_windows(values, ok, spec, cfg.window, cfg.horizon, norm, ts=frame_ts(frame))
