"""Storage: the sample schema and quality codes, the Parquet historian, regular frames.

- ``historian``: the embedded historian (long-format samples in Hive-partitioned Parquet files).
- ``frames``: the historian resampled onto a plant's sample period, gaps marked.
"""
