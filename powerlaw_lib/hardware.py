"""What this CPU can do natively: is bf16 autocast a speedup here, or an emulation?

bf16 matrix products are fast only on CPUs with AVX512-BF16 or AMX tiles; elsewhere
oneDNN/ATen emulate them and a bf16 training step runs tens of times SLOWER than float32
(measured on an AVX2-only AMD EPYC: 0.57 s fp32 vs 21.9 s bf16 for one shallow SpecReg step).
Results stay correct either way; only the time changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings

import torch

__all__ = ["has_native_bf16", "cpu_capability", "warn_if_bf16_emulated", "BF16EmulatedWarning",
           "keep_freed_memory"]


class BF16EmulatedWarning(RuntimeWarning):
    """bf16 was asked for on a CPU without native bf16 matrix units (slow, still correct)."""


def has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX tiles, which make bf16 matmuls fast."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_capability() -> str:
    """The vector ISA torch dispatches to (e.g. "AVX2", "AVX512")."""
    return torch.backends.cpu.get_cpu_capability()


def warn_if_bf16_emulated(precision: str) -> None:
    """Warn once per call site when `precision="bf16"` will be emulated on this CPU."""
    if precision == "bf16" and not has_native_bf16():
        warnings.warn(
            f"precision='bf16' on a CPU without AVX512-BF16/AMX ({cpu_capability()}): bf16 "
            "matmuls are emulated and much slower than fp32 here; results are unaffected. "
            "Use precision='fp32' on this machine.", BF16EmulatedWarning, stacklevel=3)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_KEEP = {_M_TRIM_THRESHOLD: 2 ** 31 - 1, _M_MMAP_MAX: 0}


def keep_freed_memory(enable: bool = True) -> bool:
    """Let glibc keep and reuse freed memory instead of returning it to the kernel.

    Training steps allocate and free the same large temporaries every step (a CNN batch of
    6,000 has 260 MB conv activations). By default glibc serves each with a fresh `mmap`
    and `munmap`s it when freed, so every step pays for page faults and zero-filling
    (measured: a third of a vanilla CNN step spent in the kernel). With `M_MMAP_MAX = 0`
    and a huge `M_TRIM_THRESHOLD` (`mallopt`), freed blocks stay in the heap and the next
    step reuses them. Process-wide; results are unchanged, only the time. `enable=False`
    restores glibc's defaults. Returns False (and does nothing) where glibc is not the C
    library (e.g. macOS, musl).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    values = _KEEP if enable else _GLIBC_DEFAULTS
    return all(mallopt(param, value) == 1 for param, value in values.items())
