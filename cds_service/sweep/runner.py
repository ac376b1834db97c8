"""Where the sweep's tasks run: in this process (one worker), or on Dask (`dask.distributed`): a local cluster of
worker processes on this machine, or a running scheduler (`tcp://host:8786`) deployed by Dask's own tooling
(Kubernetes, HPC). The tasks are plain functions of this package; Dask schedules, retries and moves their small
arguments and results; their records move through files on a filesystem every worker sees."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Runner(Protocol):
    """Runs one function over items, each call with the same shared arguments; results as they finish."""

    workers: int

    def share(self, value: Any) -> Any: ...

    def map(self, fn: Callable[..., Any], items: list[Any], **shared: Any) -> Iterator[Any]: ...

    def close(self) -> None: ...


class InProcess:
    """One worker: this process, in order (the embedded default for a small export, and the reference run)."""

    workers = 1

    def share(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable[..., Any], items: list[Any], **shared: Any) -> Iterator[Any]:
        for item in items:
            yield fn(item, **shared)

    def close(self) -> None:
        return None


class OnDask:
    """A Dask client: a LocalCluster of `workers` single-threaded processes (no server to start), or the scheduler
    at `scheduler`."""

    def __init__(self, workers: int, scheduler: str | None = None) -> None:
        from dask.distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines are about its own machinery
        self.cluster = None
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
        else:
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # the judging is Python: one thread per process, one process per core
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self.cluster)
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})) or workers)

    def share(self, value: Any) -> Any:
        """Sent once to every worker (not once per task)."""
        [future] = self.client.scatter([value], broadcast=True, hash=False)  # a dict alone would be key: value pairs
        return future

    def map(self, fn: Callable[..., Any], items: list[Any], **shared: Any) -> Iterator[Any]:
        from dask.distributed import as_completed

        if not items:
            return
        futures = self.client.map(fn, items, pure=False, **shared)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def runner(workers: int, scheduler: str | None) -> Runner:
    """In this process for one worker with no scheduler; Dask otherwise."""
    if scheduler is None and workers <= 1:
        return InProcess()
    return OnDask(workers, scheduler)
