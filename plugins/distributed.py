"""Dask distributed scale-out of ``rrim reprocess``: one task per file, on an existing scheduler
(``--dask-scheduler ADDRESS``) or a local cluster of worker processes (``--dask-workers N``).

Only paths, the model's path and sha256 and the options travel to the workers; each task loads and
verifies the model and runs it with its own :class:`~rrim.inversion.engine.Engine` (the onnxruntime
session stays built in the worker process, :mod:`rrim.models.sessions`). The calling process holds the output folder's lock throughout.
"""
from __future__ import annotations

import logging

from rrim.inversion.engine import Engine
from rrim.io.schema import ArchiveOptions
from rrim.jobs.reprocess import reprocess_one
from rrim.models.loading import LoadedModel, load_model


def _worker_task(path: str, out: str, model_path: str, sha256: str, opts: ArchiveOptions, provider: str,
                 input_sha256: str, input_identity: tuple, batch_size: int, threads: int | None):
    """Runs on a worker: the per-file record, or the exception (returned, so that one bad file does
    not cancel the others)."""
    try:
        model = load_model(model_path, sha256=sha256)
        with Engine(model, provider, threads=threads, tf32=opts.tf32, batch_size=batch_size) as engine:
            return reprocess_one(path, out, engine, opts, input_sha256=input_sha256, input_identity=input_identity)
    except Exception as e:
        return e


def reprocess_on_dask(jobs, model: LoadedModel, opts: ArchiveOptions, *, scheduler: str | None = None,
                      n_workers: int | None = None, provider: str = "auto", batch_size: int):
    """Yield ``(rel, record or exception)`` for ``jobs`` = [(rel, path, out, input_sha256, input_identity)] as
    they finish (the identity: :func:`rrim.files.identity` when the digest was taken).

    On a local cluster of N workers each session gets 1/N of this machine's CPUs (N sessions with
    all cores each would oversubscribe them); on a given scheduler each worker uses its machine's CPUs.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    from rrim.models.sessions import available_cpus

    # no dashboard; the scheduler's HTTP endpoint (always started) on a free loopback port, never a fixed :8787
    cluster = None if scheduler else LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                  dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                                                  silence_logs=logging.getLogger("distributed").getEffectiveLevel())
    threads = None if scheduler else max(1, available_cpus() // max(1, n_workers or 1))
    try:
        with Client(scheduler or cluster) as client:
            futures = {client.submit(_worker_task, str(path), str(out), str(model.path), model.sha256, opts, provider,
                                     digest, ident, batch_size, threads, pure=False): rel
                       for rel, path, out, digest, ident in jobs}
            for future in as_completed(futures):
                yield futures[future], future.result()
    finally:
        if cluster is not None:
            cluster.close()
