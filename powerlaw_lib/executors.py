"""Executors for grids of runs: the embedded local loop (in `experiments.run_grid`) or Dask.

On a Dask cluster every missing config becomes one task; each worker writes its result into
the shared store folder (atomic writes, one file per config), so a grid interrupted on a
cluster resumes exactly like a local one.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence


def dask_map(fn: Callable[..., Any], items: Sequence[Any], *args: Any, executor: Any = None
             ) -> list[Any]:
    """`[fn(item, *args) for item in items]` on a Dask cluster.

    executor: a `distributed.Client`, or a scheduler address such as "tcp://127.0.0.1:8786"
    (a client is opened and closed here). Results come back in the order of `items`.
    """
    if executor is None:
        raise ValueError("executor must be a distributed.Client or a scheduler address")
    try:
        from distributed import Client
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("running a grid on Dask needs `pip install 'dask[distributed]'`") from e
    own = isinstance(executor, str)
    client = Client(executor) if own else executor
    try:
        # pure=False: the same config submitted twice is still one store write (cached).
        futures = [client.submit(fn, item, *args, pure=False) for item in items]
        return client.gather(futures)
    finally:
        if own:
            client.close()
