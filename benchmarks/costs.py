"""Per-configuration costs for the cost model (`powerlaw_lib.costs`).

Every cost class (`powerlaw_lib.costs.cost_class`) that the chapters' grids contain, at
their default parameters, is timed once: a training step (the grid's batch size), the
per-epoch refresh (eigenvectors of every eq.-2-regularized layer and the whitening
statistics, over the whole training set), and the attack evaluation. Each figure is also
divided by a float32 GEMM (`measures.gemm_callables`) timed in the same rounds, so a figure
from a loaded or a different machine can be rescaled.

The evaluation figure is an upper bound: input-gradient passes for every attack step of
every image at every ε of the config's grids (FGSM on the test set, PGD on its subset,
the restarts of the strength check), at the measured seconds per image of a forward and
backward pass. The library's PGD stops attacking an image once it is broken, so real
evaluations are faster (the cost model prefers the stored runs' own times when there are any).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from powerlaw_lib.config import RunConfig
from powerlaw_lib.costs import cost_class
from powerlaw_lib.experiments import build
from powerlaw_lib.grids import CHAPTER_GRIDS
from powerlaw_lib.methods import build_penalty
from powerlaw_lib.training import freeze_whitening, make_optimizer, training_step

from .measures import gemm_callables
from .timing import interleaved_medians

__all__ = ["grid_cost_classes", "cost_figures", "attack_passes"]


def grid_cost_classes() -> dict[str, tuple[str, RunConfig]]:
    """cost class -> (chapter, one representative config), over every chapter grid."""
    out: dict[str, tuple[str, RunConfig]] = {}
    for chapter, grid in CHAPTER_GRIDS.items():
        for c in grid():
            out.setdefault(cost_class(c), (chapter, c))
    return out


def attack_passes(config: RunConfig, n_test: int) -> float:
    """Image-gradient passes of a full evaluation, every image attacked to the last step."""
    fgsm = len(config.fgsm_eps) * n_test
    pgd = len(config.pgd_eps) * config.pgd_steps * min(config.pgd_subset or n_test, n_test)
    strength = (len(config.strength_eps) * min(config.strength_subset or n_test, n_test)
                * (config.pgd_steps + config.strength_restarts * config.strength_steps))
    return float(fgsm + pgd + strength)


def cost_figures(config: RunConfig, x_tr: torch.Tensor, y_tr: torch.Tensor, n_test: int,
                 repeats: int = 3) -> dict[str, float]:
    """Seconds (and GEMM multiples) per step, per refresh and per evaluation of `config`."""
    b = config.batch_size
    model = build(config)
    penalty = build_penalty(config)
    opt = make_optimizer(config, model)
    gen = torch.Generator().manual_seed(0)
    xb, yb = x_tr[:b], y_tr[:b]
    chunk = min(2000, len(x_tr))
    xa, ya = x_tr[:chunk], y_tr[:chunk]

    def refresh():
        freeze_whitening(model, x_tr)
        penalty.start_epoch(model, x_tr, gen)

    def step():
        training_step(model, opt, penalty, xb, yb)

    def attack_pass():  # one input-gradient pass on `chunk` images, eval mode
        model.eval()
        x = xa.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), ya, reduction="sum")
        torch.autograd.grad(loss, x)
        model.train()

    refresh()  # the first refresh readies the penalties for the step
    gemm = gemm_callables()["fp32"]
    t = interleaved_medians({"step": step, "refresh": refresh, "attack": attack_pass,
                             "gemm": gemm}, repeats, warmup=1)
    evaluate = t["attack"] / chunk * attack_passes(config, n_test)
    out = {"step_seconds": t["step"], "refresh_seconds": t["refresh"],
           "evaluate_seconds": evaluate, "gemm_seconds": t["gemm"]}
    for name in ("step", "refresh", "evaluate"):
        out[f"{name}_gemm_units"] = out[f"{name}_seconds"] / t["gemm"]
    return out
