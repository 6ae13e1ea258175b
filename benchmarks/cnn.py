"""The CNN step against the pre-optimisation implementation (:mod:`benchmarks.reference_cnn`).

For each method of the deep chapter (vanilla, whitening, SpecReg on the last / every hidden
layer, Jacobian), one training step of the library's CNN and of :class:`BaselineCNN` start
from the same weights and the same batch and are timed in interleaved rounds. The baseline
runs with glibc's default allocator settings, the library with
:func:`powerlaw_lib.hardware.keep_freed_memory` (part of the library's speed-up: `train`
turns it on); each side runs in a process of its own, since the allocator's state is
process-wide.
"""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from powerlaw_lib.config import RunConfig
from powerlaw_lib.experiments import build
from powerlaw_lib.hardware import keep_freed_memory
from powerlaw_lib.methods import Penalty, build_penalty
from powerlaw_lib.training import freeze_whitening, make_optimizer, step_chunk, training_step

from .reference_cnn import BaselineCNN
from .timing import interleaved_medians

__all__ = ["CNN_METHODS", "cnn_speed_figures"]

_CNN = RunConfig(arch="cnn", hidden=(1000,), batch_norm=False, batch_size=6000)
_SPEC = {"regularizer": "spectral", "alpha": 1.0, "tau": 10, "beta": 2.0}
#: The deep chapter's CNN methods (Nassar et al. 2020, §4.2-4.3), batch 6000.
CNN_METHODS = {
    "vanilla": _CNN,
    "whitening": _CNN.replace(whiten_after=2),
    "specreg_last": _CNN.replace(**_SPEC, reg_layers=(3,)),
    "specreg_all": _CNN.replace(**_SPEC, reg_layers=(1, 2, 3)),
    "jacobian": _CNN.replace(regularizer="jacobian", beta=0.01),
}


def _baseline_of(config: RunConfig, model: torch.nn.Module) -> BaselineCNN:
    c, h, _ = config.input_shape
    base = BaselineCNN(in_channels=c, image_size=h, hidden=config.hidden[0],
                       n_classes=config.n_classes, whiten=config.whiten_after is not None)
    base.load_state_dict(model.state_dict())
    return base


def step_seconds(method: str, implementation: str, batch: int, repeats: int = 3) -> float:
    """Median seconds of one training step of `method` (a `CNN_METHODS` key) on MNIST.

    `implementation` is "library" (the library's CNN, `keep_freed_memory` on and the step in
    `step_chunk` passes, as `train` does) or "baseline" (:class:`BaselineCNN` with the same
    weights, glibc's defaults).
    """
    from powerlaw_lib.experiments import load_data

    x_tr, y_tr, _, _ = load_data(RunConfig())
    config = CNN_METHODS[method].replace(batch_size=batch)
    model = build(config)
    freeze_whitening(model, x_tr)
    gen = torch.Generator().manual_seed(0)
    penalty = build_penalty(config)
    penalty.start_epoch(model, x_tr, gen)  # eq. 2: the eigenvectors on the training set
    net = model if implementation == "library" else _baseline_of(config, model)
    keep_freed_memory(implementation == "library")
    opt = make_optimizer(config, net)
    xb, yb = x_tr[:batch], y_tr[:batch]
    chunk = step_chunk(net, penalty) if implementation == "library" else None  # as `train`
    return interleaved_medians(
        {"step": lambda: training_step(net, opt, penalty, xb, yb, chunk=chunk)},
        repeats, warmup=1)["step"]


def cnn_speed_figures(batch: int = 6000, methods: tuple[str, ...] = tuple(CNN_METHODS),
                      repeats: int = 3, rounds: int = 2) -> dict[str, dict[str, float]]:
    """Per method: baseline and library step seconds and their ratio.

    The allocator setting is process-wide and its state outlives a call, so each side is
    timed in a fresh process (`python -m benchmarks.cnn METHOD IMPLEMENTATION`), the two
    alternating for `rounds` rounds; the medians of the rounds are reported.
    """
    out = {}
    root = Path(__file__).resolve().parent.parent
    for method in methods:
        times: dict[str, list[float]] = {"baseline": [], "library": []}
        for _ in range(rounds):
            for impl in times:
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.cnn", method, impl, str(batch),
                     str(repeats)], cwd=root, capture_output=True, text=True, check=True)
                times[impl].append(float(proc.stdout.strip().splitlines()[-1]))
        base, lib = statistics.median(times["baseline"]), statistics.median(times["library"])
        out[method] = {"step_seconds_baseline": base, "step_seconds_library": lib,
                       "speedup": base / lib}
    return out


def cnn_pgd_figures(data: tuple[torch.Tensor, ...], eps_grid: tuple[float, ...],
                    n_images: int = 2000, train_images: int = 60_000) -> dict[str, float]:
    """The CNN's PGD-40 accuracy curve in units of one vanilla CNN training epoch.

    A vanilla CNN is trained for one epoch (Adam lr 1e-3, batch 500, on `train_images`):
    a network with clean accuracy near the papers', so that the attack's early stopping on
    broken images behaves as in a real evaluation. Then, timed: one epoch at the grid's
    setting (batch 6000, refresh-free) and the curve on the fixed 2,000-image PGD subset,
    with and without the shared PGD prefix of the library (`pgd_shared_prefix_speedup`).
    """
    import numpy as np

    from powerlaw_lib.attacks import _pgd_accuracy_fast, robust_accuracy
    from powerlaw_lib.data import subset
    from powerlaw_lib.evaluation import PGD_SUBSET_SEED
    from powerlaw_lib.inference import accuracy
    from powerlaw_lib.training import train

    x_tr, y_tr, x_te, y_te = data
    warm = CNN_METHODS["vanilla"].replace(lr=1e-3, batch_size=500, epochs=1)
    model = build(warm)
    train(model, warm, x_tr[:train_images], y_tr[:train_images], x_te[:1000], y_te[:1000],
          progress=False)
    grid = CNN_METHODS["vanilla"].replace(epochs=1)
    opt = make_optimizer(grid, model)
    timed_model = copy.deepcopy(model)

    def epoch():  # the steps of one epoch at batch 6000 and the test accuracy, as `train` does
        opt_ = make_optimizer(grid, timed_model)
        for i in range(0, len(x_tr) - grid.batch_size + 1, grid.batch_size):
            training_step(timed_model, opt_, Penalty(), x_tr[i:i + grid.batch_size],
                          y_tr[i:i + grid.batch_size], chunk=step_chunk(timed_model, Penalty()))
        accuracy(timed_model, x_te, y_te)

    x, y = subset(x_te, y_te, n_images, seed=PGD_SUBSET_SEED)
    model.eval()
    curve = {}

    def pgd_curve():
        curve["accuracy"] = robust_accuracy(model, x, y, "pgd", eps_grid, batch_size=6000,
                                            steps=40, step_size=0.01).tolist()

    def pgd_curve_unshared():  # every ε from x: the curve before the shared prefix
        curve["unshared"] = _pgd_accuracy_fast(model, x, y, np.asarray(eps_grid), 6000, None,
                                               share_prefix=False).tolist()

    del opt
    t = interleaved_medians({"epoch": epoch, "pgd": pgd_curve, "unshared": pgd_curve_unshared},
                            repeats=1, warmup=0)
    # the same iterates; only the batches they are evaluated in differ (rounding of the GEMMs)
    gap = max(abs(a - b) for a, b in zip(curve["accuracy"], curve["unshared"]))
    assert gap <= 1 / len(x), f"the shared prefix changed the PGD curve by {gap}"
    return {"clean_accuracy": accuracy(model, x_te, y_te), "pgd_accuracy": curve["accuracy"],
            "epoch_seconds": t["epoch"], "pgd_curve_seconds": t["pgd"],
            "pgd_curve_in_epochs": t["pgd"] / t["epoch"],
            "pgd_curve_unshared_seconds": t["unshared"],
            "pgd_shared_prefix_speedup": t["unshared"] / t["pgd"]}


if __name__ == "__main__":  # one side of `cnn_speed_figures`: prints the median step seconds
    method, implementation, batch, repeats = sys.argv[1:5]
    print(step_seconds(method, implementation, int(batch), int(repeats)))
