"""Wall-clock timing helpers and a description of the machine.

The machine may be shared, so every figure is the median of several repeats, and
quantities that enter a ratio are measured in interleaved rounds (A, B, A, B, ...) so that
both sides of the ratio see the same background load.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import numpy as np
import torch

__all__ = ["interleaved_medians", "machine_description", "median_seconds"]


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    return interleaved_medians({"fn": fn}, repeats, warmup)["fn"]


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 5,
                        warmup: int = 1) -> dict[str, float]:
    """Median wall time (s) of each callable, timed in interleaved rounds.

    Every round calls each function once, in the given order; ``warmup`` untimed rounds
    come first (allocations, oneDNN primitive creation, lazy caches).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_description() -> dict[str, object]:
    """CPU, core count, relevant ISA extensions, library versions and threads."""
    flags = _cpu_flags()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "isa": sorted(f for f in flags if f in {"avx2", "fma", "avx512f", "avx512_bf16",
                                                "avx512_vnni", "amx_bf16"}),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "onednn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "load_average_at_start": list(load) if load else None,
    }
