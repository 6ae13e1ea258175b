"""Forward passes without gradient: eval mode, inference mode, autocast, chunks.

The one place where a network is run for measurement rather than training: test accuracy,
hidden representations for spectra, the epoch-start eigenvector refresh of eq. 2 (Nassar et
al. 2020, §3: "model in eval mode, no gradient"), and the statistics of frozen whitening.
Bottom layer: it imports nothing from `powerlaw_lib`; `training`, `evaluation` and the
method penalties build on it.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import nn

#: Rows per chunk when a whole data set is pushed through a network (>= any whitened width,
#: so even a whitening layer that is not frozen sees a full-rank batch).
EVAL_CHUNK = 5000
PRECISIONS = ("fp32", "bf16")


def autocast(precision: str):
    """bf16 autocast on the CPU for ``precision="bf16"``; a no-op for "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def measuring(model: nn.Module, precision: str = "fp32") -> Iterator[nn.Module]:
    """Eval mode + `torch.inference_mode` + `autocast(precision)`; restores the mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            yield model
    finally:
        model.train(was_training)


def chunks(n: int, chunk: int | None = None) -> Iterator[slice]:
    """Consecutive slices of at most `chunk` rows (default `EVAL_CHUNK`) covering range(n)."""
    chunk = EVAL_CHUNK if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))


def stream_hidden(model: nn.Module, x: torch.Tensor, layers: list[int], precision: str = "fp32",
                  chunk: int | None = None) -> Iterator[tuple[slice, dict[int, torch.Tensor]]]:
    """(rows, {layer: activations [rows, N_l]}) chunk by chunk over `x`, measuring mode.

    `layers` are 1-based hidden-layer indices; activations come in the autocast dtype. For
    consumers that reduce the activations as they stream (covariance accumulators), so the
    whole [n, N_l] matrix is never stored.
    """
    with measuring(model, precision):
        for rows in chunks(len(x), chunk):
            _, hs = model.forward_with_hidden(x[rows])
            yield rows, {l: hs[l - 1] for l in layers}


def hidden_representations(model: nn.Module, x: torch.Tensor, layers: list[int],
                           precision: str = "fp32", chunk: int | None = None
                           ) -> dict[int, torch.Tensor]:
    """Hidden activations of `layers` (1-based) over all of `x`: layer -> [n, N_l] float32.

    Each chunk is written straight into the preallocated output (cast to float32 on copy).
    """
    out: dict[int, torch.Tensor] = {}
    for rows, hs in stream_hidden(model, x, layers, precision, chunk):
        for l, h in hs.items():  # h [rows, N_l]
            if l not in out:
                out[l] = torch.empty(len(x), h.shape[1], dtype=torch.float32, device=h.device)
            out[l][rows] = h
    return {l: out[l] for l in layers}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32",
             chunk: int | None = None) -> float:
    """Fraction of the images x [n, C, H, W] classified as y [n], measuring mode, in chunks."""
    correct = 0
    with measuring(model, precision):
        for rows in chunks(len(x), chunk):
            correct += int((model(x[rows]).argmax(1) == y[rows]).sum())
    return correct / len(x)
