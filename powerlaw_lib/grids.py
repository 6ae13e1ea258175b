"""The grid of runs behind each chapter: one function per chapter.

Each function's keyword defaults ARE the chapter's default parameters (the book's
settings), so a script, a test or the command line can ask exactly what a chapter needs:

>>> from powerlaw_lib import grids
>>> from powerlaw_lib.store import ResultStore
>>> ResultStore("data/results").missing(grids.shallow())   # [] when the chapter is complete

Smaller values (fewer seeds, epochs or images) give a quicker but noisier picture; the
chapters say what that means for their conclusions.
"""

from __future__ import annotations

from typing import Sequence

from .config import EPS_GRID, NOISE_GRID, RunConfig


def _seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    return seeds


def shallow(seeds: Sequence[int] = (0, 1, 2), epochs: int = 50,
            betas: Sequence[float] = (1.0, 2.0, 5.0), no_bn_betas: Sequence[float] = (2.0, 5.0),
            width: int = 2000, batch_size: int = 3000, lr: float = 1e-3,
            optimizer: str = "amsgrad", text_lr_check: Sequence[int] = (0,),
            train_subset: int | None = None, test_subset: int | None = None,
            pgd_subset: int | None = 2000, precision: str = "fp32",
            eps_grid: Sequence[float] = EPS_GRID, noise_grid: Sequence[float] = NOISE_GRID,
            ) -> list[RunConfig]:
    """Nassar et al. 2020, §4.1: 784-`width`-10 tanh MLP on MNIST, vanilla vs SpecReg.

    With batch norm after the activation: vanilla, and SpecReg (α = 1, τ = 10) on the hidden
    layer for every β in `betas`. Without batch norm (the paper's appendix): vanilla, and
    SpecReg for every β in `no_bn_betas` (none at all when it is empty). Every
    configuration for every seed.

    The optimizer follows the authors' §4.1 code (Adam with amsgrad, lr 1e-3); the paper's
    text gives lr 1e-4. `text_lr_check` adds, for these seeds, the batch-norm vanilla run
    with plain Adam at lr 1e-4, to show what the text's setting gives in the same budget.
    """
    base = RunConfig(dataset="mnist", arch="mlp", hidden=(width,), activation="tanh",
                     optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs,
                     train_subset=train_subset, test_subset=test_subset,
                     pgd_subset=pgd_subset, precision=precision, fgsm_eps=tuple(eps_grid),
                     pgd_eps=tuple(eps_grid), noise_sigma=tuple(noise_grid))
    configs = []
    for seed in _seeds(seeds):
        for bn, bs in ((True, tuple(betas)), (False, tuple(no_bn_betas))):
            if not bn and not bs:
                continue  # no batch-norm-free SpecReg asked for: skip its vanilla twin too
            configs.append(base.replace(batch_norm=bn, seed=seed))
            configs += [base.replace(batch_norm=bn, seed=seed, regularizer="spectral",
                                     reg_layers=(1,), alpha=1.0, tau=10, beta=float(b))
                        for b in bs]
    configs += [base.replace(batch_norm=True, seed=s, optimizer="adam", lr=1e-4)
                for s in text_lr_check]
    return configs


#: Every chapter's grid, by chapter name (used by the command line).
CHAPTER_GRIDS = {"shallow": shallow}
