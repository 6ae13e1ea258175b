"""The measurements of `make bench`: GEMM throughput, training steps, epochs, PGD curves.

Every function returns a flat dict of JSON-ready numbers. Times are wall-clock seconds on
this machine (medians of interleaved repeats, see :mod:`benchmarks.timing`); FLOP counts
are analytic (:mod:`benchmarks.flops`).
"""

from __future__ import annotations

import copy
import inspect
import time

import numpy as np
import torch

from powerlaw_lib.attacks import robust_accuracy, robust_accuracy_naive
from powerlaw_lib.config import TRAIN_SIZES, RunConfig
from powerlaw_lib.data import subset
from powerlaw_lib.experiments import build
from powerlaw_lib.regularizers import SlopeRegularizer
from powerlaw_lib.methods import LayerPenalty, build_penalty, refresh_eigenvectors
from powerlaw_lib.training import make_optimizer, train, training_step

from .flops import loop_step_flops, spectral_epoch_flops, spectral_step_flops
from .reference import LoopSpectralPenalty
from .timing import interleaved_medians

__all__ = ["gemm_callables", "gemm_gflops", "step_figures", "slope_step_figures", "epoch_figures",
           "pgd_figures", "PENALTY_AGREEMENT_RTOL"]

#: The loop baseline and the library must compute the same penalty to this relative tolerance.
PENALTY_AGREEMENT_RTOL = 1e-5
GEMM_SIZE = 2048


def gemm_callables(size: int = GEMM_SIZE) -> dict[str, object]:
    """Square ``size``³ matmuls in float32 and bfloat16 (callables) and their FLOPs."""
    gen = torch.Generator().manual_seed(0)
    a32 = torch.randn(size, size, generator=gen)
    b32 = torch.randn(size, size, generator=gen)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    out32 = torch.empty(size, size)
    out16 = torch.empty(size, size, dtype=torch.bfloat16)
    return {"fp32": lambda: torch.mm(a32, b32, out=out32),
            "bf16": lambda: torch.mm(a16, b16, out=out16),
            "flops": 2.0 * size ** 3}


def gemm_gflops(repeats: int = 9, bf16_size: int = GEMM_SIZE) -> dict[str, float]:
    """Throughput (GFLOP/s) of large square float32 and bfloat16 matmuls.

    The bf16 product is ``bf16_size``³: smaller on CPUs that emulate bf16 (no AVX512-BF16
    or AMX), where a 2048³ product takes seconds.
    """
    g32, g16 = gemm_callables(), gemm_callables(bf16_size)
    t = interleaved_medians({"fp32": g32["fp32"], "bf16": g16["bf16"]}, repeats, warmup=2)
    return {"gemm_gflops_fp32": g32["flops"] / t["fp32"] / 1e9,
            "gemm_gflops_bf16": g16["flops"] / t["bf16"] / 1e9,
            "gemm_bf16_size": bf16_size}


def _precisions(bf16: bool) -> tuple[str, ...]:
    """The precisions to time: fp32 always, bf16 only when asked."""
    return ("fp32", "bf16") if bf16 else ("fp32",)


def _penalty_agreement(model, regs, loop_regs, xb) -> tuple[float, float]:
    """Largest relative difference between library and loop penalties on the same batch.

    Returns (float64, float32): both formulations evaluated on the same activations and
    eigenbasis in float64, and as timed, in float32. The float64 figure is the one that
    must stay below :data:`PENALTY_AGREEMENT_RTOL`; in float32 the baseline's route
    (diag(Vᵀ Σ_B V) of a float32 covariance) loses the smallest quotients of strongly
    decaying spectra to rounding, so the float32 figure is reported, not asserted.
    """
    was_training = model.training
    model.train()
    with torch.no_grad():
        _, hs = model.forward_with_hidden(xb)
    model.train(was_training)
    worst = {torch.float64: 0.0, torch.float32: 0.0}
    for dtype in worst:
        for l, reg in regs.items():
            h = hs[l - 1].to(dtype)
            fast = float(reg(h))
            slow = float(loop_regs[l](h))
            worst[dtype] = max(worst[dtype], abs(fast - slow) / abs(slow))
    return worst[torch.float64], worst[torch.float32]


def step_figures(config: RunConfig, x_ref: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor,
                 repeats: int = 5, bf16: bool = True) -> dict[str, float | None]:
    """One regularized training step of `config`: library vs loop baseline, fp32 vs bf16.

    The reference eigenbasis is refreshed once on ``x_ref`` (not timed). Four variants of
    :func:`powerlaw_lib.training.training_step` start from the same weights and are timed
    in interleaved rounds together with the float32 GEMM of :func:`gemm_callables`: the
    library's float32 step, the same step with :class:`~benchmarks.reference.LoopSpectralPenalty`
    in place of the library's penalty, the library's bf16 step (only with ``bf16``; its
    figures are None otherwise) and an unregularized float32 step.
    """
    model = build(config)
    regs = build_penalty(config).regularizers  # layer -> SpectralRegularizer
    refresh_eigenvectors(model, regs, x_ref, "fp32")
    loop_regs = {l: LoopSpectralPenalty(r.basis.eigenvectors, config.alpha, config.tau, config.beta)
                 for l, r in regs.items()}
    agreement, agreement_fp32 = _penalty_agreement(model, regs, loop_regs, xb)
    if agreement > PENALTY_AGREEMENT_RTOL:
        raise AssertionError(f"loop and library penalties differ by {agreement:.2e} (relative, "
                             f"float64) for {config.label}; allowed {PENALTY_AGREEMENT_RTOL:g}")
    variants = {}
    for name, r, precision in (("library", regs, "fp32"), ("loop", loop_regs, "fp32"),
                               ("library_bf16", regs, "bf16"), ("plain", {}, "fp32")):
        if precision == "bf16" and not bf16:
            continue
        m = copy.deepcopy(model)
        opt = make_optimizer(config, m)
        variants[name] = (lambda m=m, opt=opt, r=r, p=precision:
                          training_step(m, opt, LayerPenalty(r, p), xb, yb, p))
    gemm = gemm_callables()
    t = interleaved_medians({**variants, "gemm_fp32": gemm["fp32"]}, repeats, warmup=1)
    widths = [config.hidden_widths[l - 1] for l in config.reg_layers]
    flops = spectral_step_flops(model, config.input_shape, len(xb), widths)
    gemm_rate = gemm["flops"] / t["gemm_fp32"]
    return {
        "batch": len(xb),
        "reg_widths": widths,
        "step_gflop": flops / 1e9,
        "step_seconds_library_fp32": t["library"],
        "step_seconds_loop_fp32": t["loop"],
        "step_seconds_library_bf16": t.get("library_bf16"),
        "step_seconds_plain_fp32": t["plain"],
        "gemm_gflops_fp32_same_rounds": gemm_rate / 1e9,
        "speedup_vs_loop": t["loop"] / t["library"],
        "loop_over_library_flops": loop_step_flops(model, config.input_shape, len(xb), widths) / flops,
        "gemm_fraction": flops / t["library"] / gemm_rate,
        "bf16_step_speedup": t["library"] / t["library_bf16"] if bf16 else None,
        "regularized_over_plain": t["library"] / t["plain"],
        "penalty_relative_difference_float64": agreement,
        "penalty_relative_difference_float32": agreement_fp32,
    }


def _slope_regularizers(config: RunConfig, layers: tuple[int, ...], **kwargs) -> dict[int, SlopeRegularizer]:
    """Subspace slope penalties (α, β, ranks of `config`, mode "abs") on `layers`.

    The block size is the default, or the narrowest layer's width if that is smaller
    (only in ``--quick`` runs).
    """
    default = inspect.signature(SlopeRegularizer).parameters["subspace_size"].default
    size = min([default] + [config.hidden_widths[l - 1] for l in layers])
    return {l: SlopeRegularizer(config.alpha, config.beta, ranks=config.slope_ranks, mode="abs",
                                method="subspace", subspace_size=size, **kwargs) for l in layers}


def slope_step_figures(config: RunConfig, layers: tuple[int, ...], xb: torch.Tensor, yb: torch.Tensor,
                       repeats: int = 5) -> dict[str, float]:
    """A Gerum et al. 2022 slope-penalized training step (``method="subspace"``) vs a plain step.

    `config` describes the model and optimiser (its own regularizer is ignored: batch sizes
    below a layer's width are allowed here); the slope penalty is put on the hidden
    `layers`. Three variants of :func:`powerlaw_lib.training.training_step` start from the
    same weights and are timed in interleaved rounds, float32: the step with warm-started
    subspace tracking, the same step with a cold start at every call (``restart_every=1``)
    and an unregularized step. The warm-up round holds the first (cold) call. The
    amortised ratio charges one cold start every ``restart_every`` calls or at every epoch
    start (``training.train`` cold-starts each epoch so that resumed runs are identical),
    whichever comes first: an MNIST epoch has 60,000 / batch steps.
    """
    model = build(config)
    warm = _slope_regularizers(config, layers)
    restart_every = min(next(iter(warm.values())).eigenspace.restart_every,
                        max(1, TRAIN_SIZES[config.dataset] // len(xb)))
    variants = {}
    for name, regs in (("slope", warm), ("slope_cold", _slope_regularizers(config, layers, restart_every=1)),
                       ("plain", {})):
        m = copy.deepcopy(model)
        opt = make_optimizer(config, m)
        variants[name] = (lambda m=m, opt=opt, r=regs:
                          training_step(m, opt, LayerPenalty(r), xb, yb, "fp32"))
    t = interleaved_medians(variants, repeats, warmup=1)
    amortised = ((restart_every - 1) * t["slope"] + t["slope_cold"]) / restart_every
    return {
        "batch": len(xb),
        "reg_widths": [config.hidden_widths[l - 1] for l in layers],
        "step_seconds_slope_fp32": t["slope"],
        "step_seconds_slope_cold_start_fp32": t["slope_cold"],
        "step_seconds_plain_fp32": t["plain"],
        "restart_every": restart_every,
        "slope_over_plain_warm": t["slope"] / t["plain"],
        "slope_over_plain": amortised / t["plain"],
    }


def epoch_figures(config: RunConfig, data: tuple[torch.Tensor, ...], repeats: int = 2,
                  bf16: bool = True) -> dict[str, float | None]:
    """Whole regularized epochs of :func:`powerlaw_lib.training.train`, fp32 and bf16.

    Each timed call trains a fresh model of `config` for one epoch (refresh over the
    training set, every step, test accuracy). fp32 epochs, bf16 epochs and a float32 GEMM
    are timed in interleaved rounds after an untimed warm-up epoch on a small subset.
    Without ``bf16`` the bf16 epochs are skipped and their figures are None.
    """
    x_tr, y_tr, x_te, y_te = data
    config = config.replace(epochs=1)

    def epoch(precision: str, n: int | None = None) -> None:
        c = config.replace(precision=precision)
        xs, ys = (x_tr, y_tr) if n is None else (x_tr[:n], y_tr[:n])
        train(build(c), c, xs, ys, x_te, y_te, progress=False)

    warm = max(2 * config.batch_size, 6000)
    precisions = _precisions(bf16)
    for p in precisions:
        epoch(p, warm)
    gemm = gemm_callables()
    t = interleaved_medians({**{p: (lambda p=p: epoch(p)) for p in precisions},
                             "gemm_fp32": gemm["fp32"]}, repeats, warmup=0)
    model = build(config)
    widths = [config.hidden_widths[l - 1] for l in config.reg_layers]
    flops = spectral_epoch_flops(model, config.input_shape, config.batch_size, widths,
                                 len(x_tr), len(x_te))
    gemm_rate = gemm["flops"] / t["gemm_fp32"]
    return {
        "epoch_gflop": flops / 1e9,
        "epoch_seconds_fp32": t["fp32"],
        "epoch_seconds_bf16": t.get("bf16"),
        "gemm_gflops_fp32_same_rounds": gemm_rate / 1e9,
        "gemm_fraction": flops / t["fp32"] / gemm_rate,
        "bf16_speedup": t["fp32"] / t["bf16"] if bf16 else None,
    }


def refresh_figures(config: RunConfig, x_tr: torch.Tensor, repeats: int = 2, bf16: bool = True
                    ) -> dict[str, float | None]:
    """The per-epoch refresh alone (forward over the training set, covariance, eigh)."""
    model = build(config)
    regs = build_penalty(config).regularizers
    precisions = _precisions(bf16)
    t = interleaved_medians({p: (lambda p=p: refresh_eigenvectors(model, regs, x_tr, p))
                             for p in precisions}, repeats, warmup=0)
    return {"refresh_seconds_fp32": t["fp32"], "refresh_seconds_bf16": t.get("bf16")}


def pgd_figures(data: tuple[torch.Tensor, ...], eps_grid: tuple[float, ...], n_images: int = 2000,
                steps: int = 40, step_size: float = 0.01, train_images: int = 15000
                ) -> dict[str, object]:
    """Robust-accuracy curve under PGD: library (fast path) vs naive (every ε to the last step).

    The network is the shallow net of Nassar et al. 2020, §4.1 (784-2000-10, tanh, batch
    norm), trained briefly for this purpose only: 3 epochs on ``train_images`` (15,000) MNIST
    training images,
    batch 500, Adam lr 1e-3, no regularizer. The PGD images are the fixed test subset the
    evaluation uses (``n_images``, seed 0). The library is timed before and after the naive
    curve and the mean of the two is reported.
    """
    x_tr, y_tr, x_te, y_te = data
    config = RunConfig(hidden=(2000,), batch_norm=True, lr=1e-3, batch_size=500,
                       train_subset=train_images, epochs=3)
    torch.manual_seed(config.seed)
    model = build(config)
    xs, ys = subset(x_tr, y_tr, config.train_subset, seed=0)
    t0 = time.perf_counter()
    train(model, config, xs, ys, x_te, y_te, progress=False)
    train_seconds = time.perf_counter() - t0
    model.eval()
    x, y = subset(x_te, y_te, n_images, seed=0)
    kwargs = dict(batch_size=n_images, steps=steps, step_size=step_size)

    def timed(fn):
        start = time.perf_counter()
        out = fn(model, x, y, "pgd", eps_grid, **kwargs)
        return time.perf_counter() - start, np.asarray(out, dtype=np.float64)

    t_fast_1, fast = timed(robust_accuracy)
    t_naive, naive = timed(robust_accuracy_naive)
    t_fast_2, fast_again = timed(robust_accuracy)
    if not np.array_equal(fast, fast_again):
        raise AssertionError("the library's PGD curve is not deterministic")
    # accuracies are counts / n_images, computed as 1 - broken / n and as correct / n
    if np.any(np.rint(fast * n_images) > np.rint(naive * n_images)):
        raise AssertionError(f"library PGD accuracy exceeds the naive one: {fast} > {naive}")
    t_fast = 0.5 * (t_fast_1 + t_fast_2)
    return {
        "pgd_net_train_seconds": train_seconds,
        "pgd_images": n_images,
        "pgd_eps": list(eps_grid),
        "pgd_accuracy_library": fast.tolist(),
        "pgd_accuracy_naive": naive.tolist(),
        "pgd_seconds_library": t_fast,
        "pgd_seconds_naive": t_naive,
        "pgd_curve_speedup_vs_naive": t_naive / t_fast,
    }
