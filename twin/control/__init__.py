"""Control: the MPC on the twin, what-if scenarios, recommendations and their exports.

The controller (``Controller``), from the call down:

- ``controller``: ``Controller`` (the MPC) and ``Predictor``, what it plans on; its module doc
  states the objective.
- ``setpoints``: ``Setpoints`` and ``check_setpoint``: CV setpoints checked and merged with the
  spec's once, where they enter.
- ``history_window``: the last samples of the history the controller reads, checked and filled.
- ``problem``: ``Problem`` (move blocking, the objective, the limits per block), the final
  projection onto the hard MV limits and its check.
- ``solve``: the Gauss-Newton iterations (``gauss_newton``, ``Solution``, ``SolveError``).
- ``qp``: one iteration's linearised step within the limits (constrained least squares).
- ``aims``: what the controller aims for, from the spec (limits, zones, priorities, costs,
  frozen MVs), and the dynamic problem retargeted each cycle.
- ``steady_target``: the twin's steady-state gains and held-MV steady state at the current point.
- ``targets``: the steady-state target optimiser, DMC-style: limits by priority, setpoints,
  economics, resting values (``targets_stages``, ``targets_lp``: its stages, its LPs).
- ``offset``, ``rollout``: the offset-free correction and the batched (traced) model calls.
- ``answer``: a solved or held plan turned into a ``Recommendation``.

Around it:

- ``recommendation``: ``Recommendation`` and ``MoveRec``, the controller's answer as plain data.
- ``whatif``: predicted trajectories under setpoint, price, limit or priority changes, or MV
  schedules (``whatif_scenario``: the scenarios; ``whatif_result``: ``WhatIf``);
  ``whatif_figure``: their figure (matplotlib).
- ``export``: recommendations as CSV / JSON files (``recommendation_rows``: the rows, also the
  app's table); ``recommendation_log``: their append-only log.
"""
