"""Control: the MPC on the twin, what-if scenarios, recommendations and their exports.

- ``controller``: ``Controller`` (the MPC); ``solve``, ``offset``, ``rollout``: its solver,
  offset-free correction and model calls.
- ``recommendation``: ``Recommendation`` and ``MoveRec``, the controller's answer.
- ``whatif``: predicted trajectories under setpoint changes or MV schedules.
- ``export``: recommendations as CSV / JSON files, and their append-only log.
"""
