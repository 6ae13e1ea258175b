"""What this CPU can do natively: is bf16 autocast a speedup here, or an emulation?

bf16 matrix products are fast only on CPUs with AVX512-BF16 or AMX tiles; elsewhere
oneDNN/ATen emulate them and a bf16 training step runs tens of times SLOWER than float32
(measured on an AVX2-only AMD EPYC: 0.57 s fp32 vs 21.9 s bf16 for one shallow SpecReg step).
Results stay correct either way; only the time changes.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["has_native_bf16", "cpu_capability", "warn_if_bf16_emulated", "BF16EmulatedWarning"]


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
