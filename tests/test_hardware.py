"""Detection of native bf16 support, and the warning when bf16 would be emulated."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from powerlaw_lib import hardware
from powerlaw_lib.config import RunConfig
from powerlaw_lib.experiments import build
from powerlaw_lib.hardware import BF16EmulatedWarning, has_native_bf16, warn_if_bf16_emulated
from powerlaw_lib.training import train

CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.skipif(not CPUINFO.exists(), reason="needs Linux /proc/cpuinfo")
def test_native_bf16_agrees_with_the_kernel_cpu_flags() -> None:
    flags: set[str] = set()
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})


def test_warns_only_for_bf16_on_a_cpu_without_it(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "has_native_bf16", lambda: False)
    with pytest.warns(BF16EmulatedWarning, match="precision='bf16'.*fp32"):
        warn_if_bf16_emulated("bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_bf16_emulated("fp32")
        monkeypatch.setattr(hardware, "has_native_bf16", lambda: True)
        warn_if_bf16_emulated("bf16")


def test_training_in_bf16_on_an_emulating_cpu_warns_and_still_trains(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "has_native_bf16", lambda: False)
    config = RunConfig(hidden=(16,), batch_norm=False, epochs=1, batch_size=50, precision="bf16")
    x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
    with pytest.warns(BF16EmulatedWarning):
        history = train(build(config), config, x, y, x[:20], y[:20], progress=False)
    assert len(history) == 1
