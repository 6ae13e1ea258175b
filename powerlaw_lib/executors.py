"""Executors: where the missing runs of a grid run. One small interface, two implementations.

An executor has ``map(fn, items, *args, describe=None, on_done=None) -> list`` returning
``[fn(item, *args) for item in items]`` in the order of `items`, calling
``on_done(index, value)`` as each task finishes (in completion order), and a `parallelism`
(how many tasks run at once):

* `LocalExecutor` (the default): on this machine. With ``jobs=1`` one task after another in
  this process, each using every thread torch is given (on a small machine also the
  fastest choice); with ``jobs=N``, N tasks side by side in fresh processes, each with
  ``threads`` torch threads (default: the cores divided by N), so N × threads never
  oversubscribes the machine.
* `DaskExecutor`: every item becomes one task on a Dask cluster (`distributed.Client`, or a
  scheduler address such as "tcp://127.0.0.1:8786"). Each task uses as many torch threads
  as its worker has (`dask worker --nthreads T`). Workers write their results into the
  shared store folder (atomic writes, one file per config, one lock per config), so a grid
  interrupted on a cluster resumes exactly like a local one. Dask is imported only here,
  and only when a `DaskExecutor` runs.

`experiments.run_grid(configs, store, executor=...)` accepts either, or anything with the
same interface.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Protocol, Sequence

from .validation import check_int

OnDone = Callable[[int, Any], None]


class Executor(Protocol):
    parallelism: int

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
            describe: Callable[[Any], str] | None = None, on_done: OnDone | None = None
            ) -> list[Any]: ...


def available_cores() -> int:
    """Cores this process may use (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def torch_threads(*_: Any) -> int:
    """The torch threads a task sees where it runs (a task of its own: map it to check)."""
    import torch

    return torch.get_num_threads()


def _call_with_threads(threads: int, fn: Callable[..., Any], item: Any, *args: Any) -> Any:
    """In a worker process: use `threads` torch threads, then run the task."""
    _set_torch_threads(threads)
    return fn(item, *args)


def _call_with_worker_threads(fn: Callable[..., Any], item: Any, *args: Any) -> Any:
    """On a Dask worker: use as many torch threads as the worker has, then run the task."""
    from distributed import get_worker

    worker = get_worker()
    threads = getattr(worker, "nthreads", None) or worker.state.nthreads
    _set_torch_threads(max(1, int(threads)))
    return fn(item, *args)


class LocalExecutor:
    """Runs the tasks on this machine: one after another in this process (``jobs=1``), or
    `jobs` at a time in fresh processes with `threads` torch threads each."""

    def __init__(self, progress: bool = True, jobs: int = 1, threads: int | None = None) -> None:
        self.progress = progress
        self.jobs = check_int("jobs", jobs, 1)
        self.threads = (check_int("threads", threads, 1) if threads is not None
                        else max(1, available_cores() // self.jobs))
        self.parallelism = self.jobs

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
            describe: Callable[[Any], str] | None = None, on_done: OnDone | None = None
            ) -> list[Any]:
        if self.jobs == 1:
            out = []
            for i, item in enumerate(items):
                if self.progress and describe is not None:
                    print(f"[{i + 1}/{len(items)}] {describe(item)}", flush=True)
                out.append(fn(item, *args))
                if on_done is not None:
                    on_done(i, out[-1])
            return out
        # "spawn": a fresh interpreter per worker (forking a process with torch's thread
        # pools running is unsafe).
        context = multiprocessing.get_context("spawn")
        results: list[Any] = [None] * len(items)
        with ProcessPoolExecutor(self.jobs, mp_context=context) as pool:
            futures = {pool.submit(_call_with_threads, self.threads, fn, item, *args): i
                       for i, item in enumerate(items)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_done is not None:
                    on_done(i, results[i])
        return results


class DaskExecutor:
    """Runs every task on a Dask cluster: a `distributed.Client` or a scheduler address
    (then a client is opened for each `map` and closed after it)."""

    def __init__(self, client_or_address: Any) -> None:
        if client_or_address is None:
            raise ValueError("DaskExecutor needs a distributed.Client or a scheduler address")
        self.target = client_or_address

    @property
    def parallelism(self) -> int:
        """Worker threads of the cluster now (1 when it cannot be asked)."""
        if isinstance(self.target, str):
            return 1
        try:
            return max(1, sum(self.target.nthreads().values()))
        except Exception:  # noqa: BLE001 -- a display figure, never worth failing for
            return 1

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
            describe: Callable[[Any], str] | None = None, on_done: OnDone | None = None
            ) -> list[Any]:
        try:
            from distributed import Client, as_completed as dask_completed
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("running a grid on Dask needs `pip install 'dask[distributed]'`") from e
        own = isinstance(self.target, str)
        client = Client(self.target) if own else self.target
        try:
            # pure=False: every submission is its own task (the store's per-config lock
            # makes a second submission of the same config wait and load the result).
            futures = [client.submit(_call_with_worker_threads, fn, item, *args, pure=False)
                       for item in items]
            index = {f.key: i for i, f in enumerate(futures)}
            try:
                for future in dask_completed(futures):
                    if on_done is not None:
                        on_done(index[future.key], future.result())
                return client.gather(futures)
            except BaseException:
                client.cancel(futures)  # Ctrl-C: drop what has not started
                raise
        finally:
            if own:
                client.close()


def as_executor(executor: Any = None, progress: bool = True) -> Executor:
    """None -> `LocalExecutor`; a scheduler address or a Dask client -> `DaskExecutor`;
    anything with a `map` method of the interface -> itself."""
    if executor is None:
        return LocalExecutor(progress)
    if isinstance(executor, (LocalExecutor, DaskExecutor)):
        return executor
    if isinstance(executor, str) or hasattr(executor, "submit"):
        return DaskExecutor(executor)
    if callable(getattr(executor, "map", None)):
        return executor
    raise ValueError("executor must be None, a LocalExecutor, a DaskExecutor, a Dask client "
                     f"or a scheduler address, got {type(executor).__name__}")
