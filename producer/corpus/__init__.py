"""Corpus jobs: embed every row of a file into Parquet or .npy beside its ids, resumably.

``embed_file`` is the whole job for a pipeline task (Airflow, Dagster, cron); ``embedq embed
--input … --output …`` is a thin layer over it. Importing this package imports neither torch
nor pyarrow; pyarrow is loaded when a job reads or writes Parquet (the ``files`` extra).
"""

from embedq.producer.corpus.job import CorpusSummary, embed_file
from embedq.producer.corpus.progress import JobProgress, ProgressDisplay

__all__ = ["CorpusSummary", "JobProgress", "ProgressDisplay", "embed_file"]
