"""Baseline of the CNN step speedup: the CNN as the library implemented it before.

conv3x3 -> tanh -> maxpool2 (twice) -> flatten -> FC -> tanh -> readout, in the default
(NCHW, contiguous) memory format, with glibc's default allocator behaviour (every
temporary of a few hundred MB mapped and unmapped by the kernel each step). Kept here so
that `make bench` measures the library's CNN against it in one run
(``cnn_step_speedup_vs_baseline``) and so tests can check both compute the same function.
It shares the parameter names of :class:`powerlaw_lib.models.CNN`, so
``baseline.load_state_dict(cnn.state_dict())`` gives the same network.
"""

from __future__ import annotations

import torch
from torch import nn

from powerlaw_lib.models import Whitening

__all__ = ["BaselineCNN"]


class BaselineCNN(nn.Module):
    """The CNN of Nassar et al. 2020 (§4.2), act-then-pool, NCHW: the pre-optimisation code."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, channels=(16, 32),
                 hidden: int = 1000, n_classes: int = 10, whiten: bool = False) -> None:
        super().__init__()
        blocks, size, fan_in, widths = [], image_size, in_channels, []
        for fan_out in channels:
            size = (size - 2) // 2
            blocks.append(nn.Sequential(nn.Conv2d(fan_in, fan_out, kernel_size=3), nn.Tanh(),
                                        nn.MaxPool2d(2)))
            widths.append(fan_out * size * size)
            fan_in = fan_out
        self.conv_blocks = nn.ModuleList(blocks)
        self.whitening = Whitening(widths[-1]) if whiten else None
        self.fc = nn.Sequential(nn.Linear(widths[-1], hidden), nn.Tanh())
        self.readout = nn.Linear(hidden, n_classes)

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = []
        h = x
        for block in self.conv_blocks:
            h = block(h)                       # [B, C_l, H_l, W_l]
            hidden.append(h.flatten(1))        # channel-major
        h = h.flatten(1)
        if self.whitening is not None:
            h = self.whitening(h)
        h = self.fc(h)
        hidden.append(h)
        return self.readout(h), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]
