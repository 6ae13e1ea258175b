"""Executors: where the missing runs of a grid run. One small interface, two implementations.

An executor has ``map(fn, items, *args, describe=None) -> list`` returning
``[fn(item, *args) for item in items]`` in the order of `items`:

* `LocalExecutor` (the default): one task after another in this process. Each run uses all
  the threads torch is given, so on a small machine this is also the fastest choice.
* `DaskExecutor`: every item becomes one task on a Dask cluster (`distributed.Client`, or a
  scheduler address such as "tcp://127.0.0.1:8786"). Workers write their results into the
  shared store folder (atomic writes, one file per config), so a grid interrupted on a
  cluster resumes exactly like a local one. Dask is imported only here, and only when a
  `DaskExecutor` runs.

`experiments.run_grid(configs, store, executor=...)` accepts either, or anything with the
same `map` method.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence


class Executor(Protocol):
    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
            describe: Callable[[Any], str] | None = None) -> list[Any]: ...


class LocalExecutor:
    """Runs the tasks one after another in this process, printing `describe(item)` first."""

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
            describe: Callable[[Any], str] | None = None) -> list[Any]:
        out = []
        for i, item in enumerate(items):
            if self.progress and describe is not None:
                print(f"[{i + 1}/{len(items)}] {describe(item)}", flush=True)
            out.append(fn(item, *args))
        return out


class DaskExecutor:
    """Runs every task on a Dask cluster: a `distributed.Client` or a scheduler address
    (then a client is opened for each `map` and closed after it)."""

    def __init__(self, client_or_address: Any) -> None:
        if client_or_address is None:
            raise ValueError("DaskExecutor needs a distributed.Client or a scheduler address")
        self.target = client_or_address

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any,
            describe: Callable[[Any], str] | None = None) -> list[Any]:
        try:
            from distributed import Client
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("running a grid on Dask needs `pip install 'dask[distributed]'`") from e
        own = isinstance(self.target, str)
        client = Client(self.target) if own else self.target
        try:
            # pure=False: every submission is its own task (the store makes reruns no-ops).
            futures = [client.submit(fn, item, *args, pure=False) for item in items]
            return client.gather(futures)
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
