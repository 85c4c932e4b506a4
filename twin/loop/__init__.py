"""The running loop: collect, recommend every sample, and (when enabled) write back, guarded.

- ``run``: ``run_loop`` (the one place that joins feed, historian, twin, controller and writer),
  its ``LoopSettings`` and ``LoopStats``.
- ``step``: one recommender step (``recommend_from_historian``, ``Step``) and the loop's timing
  defaults.
- ``ports``: what the loop needs from outside, as protocols: a ``SampleFeed`` that keeps the
  historian fed, a ``MoveWriter`` session to the plant (``connectors`` implements both).
- ``guard``: the write guard's checks (``WriteGuard``), the ``Watchdog``, their ``Decision``.
- ``writeback``: the guarded write over a move writer (``maybe_write``), audited.
- ``writer``: the loop's write-back (``LoopWriter``: sessions, file watch, approvals).
- ``audit``: the append-only audit log and the operator approvals.
"""
