"""Where the sweep's jobs run: local worker processes (the default) or Ray tasks.

An executor has one method, ``map_jobs(fn, jobs)``: it runs ``fn(job)`` for every job, each
in a worker with one torch thread, and yields ``(job, result)`` as they complete. ``fn``
and the jobs must pickle (a module-level function, plain dicts). :func:`make_executor`
resolves the name a user types::

    with make_executor("ray", workers=2) as executor:
        for job, result in executor.map_jobs(train_one, jobs):
            ...

'local' is a ``concurrent.futures`` pool of spawned processes and needs no setup. 'ray'
runs Ray tasks of one CPU each: on the cluster at ``RAY_ADDRESS`` if that is set, else on
a Ray instance it starts on this machine with ``workers`` CPUs and stops on close. Ray is
an optional extra: ``pip install -e ".[ray]"``.

A job says where it runs: a dict job with ``"device": "cuda"`` trains on the GPU. Local
workers (spawned, so CUDA works in them) then share the machine's GPU; a Ray task asks for
``1 / workers`` of a GPU, so that ``workers`` tasks share one (Ray hides the GPUs from a
task that asks for none).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "job_device", "make_executor"]


def _one_thread() -> None:
    """Worker set-up: one torch thread per worker, so workers do not fight over cores."""
    torch.set_num_threads(1)


def job_device(job: Any) -> str:
    """The device a job names (``job["device"]``), 'cpu' when it names none."""
    return str(job.get("device", "cpu")) if isinstance(job, dict) else "cpu"


def _one_thread_call(fn: Callable[[Any], Any], job: Any) -> Any:
    """``fn(job)`` with one torch thread (the body of a Ray task)."""
    _one_thread()
    return fn(job)


class Executor:
    """What every executor shares: a name, a worker count, use as a context manager."""

    name = ""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers

    @property
    def in_process(self) -> bool:
        """True when jobs are better run in the calling process (one worker, nothing to gain)."""
        return False

    def map_jobs(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds (a no-op unless it started something)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class LocalExecutor(Executor):
    """Spawned worker processes on this machine, one torch thread each.

    :param workers: processes at most (fewer when there are fewer jobs).
    """

    name = "local"

    @property
    def in_process(self) -> bool:
        return self.workers <= 1

    def map_jobs(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple]:
        """Yield ``(job, fn(job))`` for every job, in the order they complete."""
        jobs = list(jobs)
        if not jobs:
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(jobs)), mp_context=context, initializer=_one_thread
        ) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            for future in as_completed(futures):
                yield futures[future], future.result()


class RayExecutor(Executor):
    """Ray tasks of one CPU and one torch thread each (and ``1 / workers`` of a GPU for a
    job on a CUDA device).

    Connects to the cluster at ``address`` (default: the ``RAY_ADDRESS`` environment
    variable) if one is given, else starts a Ray instance on this machine with ``workers``
    CPUs, which :meth:`close` stops. A Ray instance already started in this process is used
    as it is.

    :param workers: CPUs of the Ray instance started here (ignored on a cluster).
    :param address: a Ray cluster address, e.g. 'ray://head:10001' or 'auto'.
    """

    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        super().__init__(workers)
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                'the ray executor needs Ray, which is not installed: pip install -e ".[ray]"'
            ) from None
        self._ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = False

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
        self._started = True

    def map_jobs(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple]:
        """Yield ``(job, fn(job))`` for every job, in the order they complete."""
        jobs = list(jobs)
        if not jobs:
            return
        self._connect()
        ray = self._ray
        task = ray.remote(num_cpus=1)(_one_thread_call)
        pending = {task.options(num_gpus=self.gpu_share(job)).remote(fn, job): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def gpu_share(self, job: Any) -> float:
        """The GPUs a job's task asks Ray for: 1 / workers on a CUDA device, else 0."""
        return 1 / self.workers if job_device(job).startswith("cuda") else 0

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: str, workers: int, address: str | None = None) -> Executor:
    """The executor called ``name`` ('local' or 'ray') with ``workers`` workers.

    :param address: a Ray cluster's address (Ray only; default ``RAY_ADDRESS`` or a local
        instance).
    :raises ValueError: an unknown name (the message lists the known ones), or an address
        for the local executor.
    :raises RuntimeError: 'ray' without Ray installed (the message says how to install it).
    """
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; known executors: {', '.join(EXECUTORS)}")
    if name == "ray":
        return RayExecutor(workers, address)
    if address is not None:
        raise ValueError(f"address is for the ray executor, not {name!r}")
    return EXECUTORS[name](workers)
