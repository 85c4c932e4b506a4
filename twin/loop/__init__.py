"""The running loop: collect, recommend every sample, and (when enabled) write back, guarded.

- ``run``: ``run_loop`` and the one recommender step.
- ``writer``: the loop's write-back (watchdog, file watch, approvals, sessions).
- ``writeback``: the write guard and the guarded write.
- ``audit``: the append-only audit log and the operator approvals.
"""
