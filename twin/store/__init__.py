"""Storage: the sample schema and quality codes, the Parquet historian, regular frames.

- ``historian``: :class:`~twin.store.historian.Historian`, the embedded historian (long-format
  samples in Hive-partitioned Parquet files): the public face of the modules below.
- ``schema``: the row schema, quality codes and the checks of incoming rows.
- ``layout``: the folders and files under a store's root, and the ts range each file records.
- ``writing``: atomic appends, compaction under a journal, the marks that skip duplicates.
- ``recovery``: stale temporary files, interrupted compactions, checks and quarantine.
- ``reading``: scans that open only the files in range, deduplicating overlapping ones.
- ``outages``: recorded communication outages (``gaps.jsonl``).
- ``frames``: the historian resampled onto a plant's sample period, gaps marked.
- ``jsonl``: the one append-and-fsync JSON-lines writer (outages, audit, approvals).
"""
