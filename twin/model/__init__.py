"""The learned model: windows of data, the latent dynamics network, training, the saved ``Twin``.

- ``dataset``: frames to normalised training windows (and which sample an MV value acts on).
- ``network``: the JEPA-style latent dynamics model and its config (``TwinConfig``).
- ``linear_init``: linear first: identify ARX / subspace, start every member from the better
  one, keep the linear weights if training does not beat them on validation.
- ``train``: the training loop (ensemble, early stopping, progress bar).
- ``twin``: ``Twin``: fit, save, load, forecast.
- ``saved``: the saved folder's files, their JSON and checksums.
- ``forecast``: ``Forecast`` (mean and band per tag per step) and the history window.
- ``calibration``: ``Calibration``, the split-conformal band per step and tag (re-exported by
  ``forecast``).
- ``adaptive``: bands that adapt live per tag and step as outcomes arrive (adaptive conformal
  inference), saved beside the historian as ``bands.json``.
- ``health``: the live forecast error against the validation error, and live band coverage.
- ``provenance``: what the twin was trained on (historian, time range, splits), for evaluation.

Nothing is re-exported here: importing a light module (``dataset``) must not pull in torch.
"""
