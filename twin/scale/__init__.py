"""Frames at scale: many plants' regular frames built from a lake with Spark, as Parquet shards.

:func:`~twin.scale.spark_frames.build_frames` (pyspark: ``pip install '.[scale]'``) writes the
shards; :func:`read_shards` (polars only) reads a plant's frame back. pyspark is imported by
:mod:`twin.scale.spark_frames` alone, and only when a job runs.
"""

from twin.scale.chunks import PlantJob, chunk_frame
from twin.scale.shards import read_manifest, read_shards

__all__ = ["PlantJob", "chunk_frame", "read_manifest", "read_shards"]
