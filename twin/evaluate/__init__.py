"""Evaluation: baseline forecasters and the accuracy report that compares the twin with them.

- ``baseline``: ``Baseline``, the base class every baseline shares (fit on the same frames,
  forecast from the twin's inputs), and ``Persistence``.
- ``linear``: ``ARX`` (least squares), ``IntegratedARX`` (ARX on increments: linear first's
  third candidate, not a report baseline) and ``Subspace`` (N4SID state-space identification).
- ``gru``: ``DirectGRU``, a direct multi-step GRU of about the twin's parameter count.
- ``report``: forecast accuracy per horizon step against the baselines and the twin's band
  coverage per tag, as a dict; ``default_baselines``: persistence, ARX, subspace and the GRU.
- ``render``: that dict as ``report.json``, ``report.md`` and ``forecast.png``.

A baseline that cannot be fitted is reported as skipped with its reason
(:func:`~twin.evaluate.baseline.try_fit`); the report goes on without it.
"""
