"""Evaluation of a trained network: accuracy, spectra, attack curves, sensitivity maps.

Everything here is what Nassar et al. 2020 report per run (§4.1, Fig. 2): clean test
accuracy; the eigenspectrum of every hidden layer on the test set with its power-law
exponent (Stringer et al. 2019 fit, ranks 11..500) and effective dimension (rank at 90 %
cumulative variance); FGSM and PGD accuracy over an ε grid; white-noise accuracy over a σ
grid (appendix); and sensitivity maps J_n = ∂λ_n/∂x (eq. 9) for the largest eigenvalues of
the last hidden layer. Evaluation runs in fp32 whatever precision the run trained in.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .attacks import pgd_restarts, robust_accuracy, robust_accuracy_naive
from .config import RunConfig
from .data import subset
from .models import Whitening
from .spectrum import covariance_spectrum, effective_dimension, fit_power_law
from .inference import accuracy, hidden_representations

#: Stringer et al. 2019 fit range (1-based inclusive ranks), clipped to the spectrum length.
FIT_RANKS = (11, 500)
#: Gerum et al. 2022 fit range (1-based inclusive ranks, unweighted).
GERUM_RANKS = (6, 50)
#: The PGD subset is drawn with this seed for every run, so all runs see the same images.
PGD_SUBSET_SEED = 0
NOISE_SEED = 0
#: Seed of the attack-strength check's random sample of the PGD subset.
STRENGTH_SUBSET_SEED = 1
SENSITIVITY_BATCH = 2000


def metric_name(attack: str, eps: float) -> str:
    """Key of a result's accuracy under `attack` at size ε, e.g. 'pgd_accuracy@0.05'.

    attack: "fgsm", "pgd" (the curves' points), or "strength_pgd" / "strength_restarts"
    (the attack-strength check: PGD as in the curves, and PGD with restarts).
    """
    return f"{attack}_accuracy@{eps:g}"


def has_batch_coupling(model: nn.Module) -> bool:
    """True when evaluation mode still couples the images of a batch (unfrozen whitening)."""
    return any(isinstance(m, Whitening) and not bool(m.is_frozen) for m in model.modules())


def spectrum_metrics(eigenvalues: np.ndarray, prefix: str) -> dict[str, float]:
    """Fitted α, its fit range, and the effective dimension of one layer's spectrum.

    `<prefix>_alpha`: Stringer et al. 2019's fit (weights 1/n, ranks 11..500, clipped to
    the positive eigenvalues). `<prefix>_alpha_gerum`: Gerum et al. 2022's (unweighted,
    ranks 6..50 of the spectrum normalized to sum 1), the fit their slope penalty targets.
    """
    out = {f"{prefix}_effective_dim": float(effective_dimension(eigenvalues, 0.9))}
    positive = int((eigenvalues > 0).sum())
    hi = min(FIT_RANKS[1], positive)
    if hi >= FIT_RANKS[0] + 2:
        fit = fit_power_law(eigenvalues, ranks=(FIT_RANKS[0], hi))
        out[f"{prefix}_alpha"] = float(fit.alpha)
        out[f"{prefix}_fit_hi"] = float(fit.ranks[1])
    if positive >= GERUM_RANKS[1]:
        out[f"{prefix}_alpha_gerum"] = float(
            fit_power_law(eigenvalues, ranks=GERUM_RANKS, weighted=False).alpha)
    return out


def sensitivity_maps(model: nn.Module, x: torch.Tensor, eigenvectors: torch.Tensor,
                     layer: int, top: int, n_images: int) -> torch.Tensor:
    """J_n = ∂λ_n/∂x (Nassar et al. 2020, eq. 9) for n = 1..top, on the first n_images of x.

    λ_n(X) = v_nᵀ Σ_X v_n is the variance, over the batch X [B, C, H, W], of the projection
    of layer `layer`'s activations on the n-th eigenvector v_n (columns of `eigenvectors`,
    descending). Returns [n_images, top, C, H, W].
    """
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        _, hs = model.forward_with_hidden(x)
        p = hs[layer - 1] @ eigenvectors[:, :top].to(hs[layer - 1].dtype)  # [B, top]
        lam = p.var(dim=0)                                                 # [top]
        maps = []
        for n in range(top):
            (g,) = torch.autograd.grad(lam[n], x, retain_graph=n < top - 1)
            maps.append(g[:n_images])
    finally:
        model.train(was_training)
    return torch.stack(maps, dim=1)  # [n_images, top, C, H, W]


def attack_strength_check(model: nn.Module, config: RunConfig, x: torch.Tensor, y: torch.Tensor,
                          chunk: int, ra) -> dict[str, float]:
    """Is robustness an artefact of a weak attack (gradient masking)? Madry et al. 2018.

    On `config.strength_subset` images of the PGD subset (`strength_sampling="random"`: a
    fixed random sample, the same for every run; "first": its first images, which, the
    subset's indices being sorted, are the lowest test indices), at each ε of
    `config.strength_eps`: accuracy under the run's PGD (`pgd_steps` steps, no random start)
    and under PGD with `strength_restarts` restarts of `strength_steps` steps (the first
    from x, the others from random points of the ball; an image counts as broken if any
    iterate of any restart is misclassified). Much lower accuracy under the stronger attack
    would mean the first numbers overstate robustness.
    """
    if not config.strength_eps:
        return {}
    n = min(config.strength_subset or len(x), len(x))
    if config.strength_sampling == "random" and n < len(x):
        x, y = subset(x, y, n, seed=STRENGTH_SUBSET_SEED)
    else:
        x, y = x[:n], y[:n]
    base = ra(model, x, y, "pgd", config.strength_eps, batch_size=chunk,
              steps=config.pgd_steps, step_size=config.pgd_step_size)
    out: dict[str, float] = {}
    gen = torch.Generator().manual_seed(PGD_SUBSET_SEED)
    for eps, acc in zip(config.strength_eps, base):
        survived = pgd_restarts(model, x, y, eps, config.strength_restarts,
                                steps=config.strength_steps, step_size=config.pgd_step_size,
                                generator=gen, batch_size=chunk)
        out[metric_name("strength_pgd", eps)] = float(acc)
        out[metric_name("strength_restarts", eps)] = float(np.mean(survived))
    return out


def strength_sample_text(config: RunConfig) -> str:
    """Which images the attack-strength check of `config` used, in words for a chapter."""
    n = config.strength_subset
    if n is None or (config.pgd_subset is not None and n >= config.pgd_subset):
        return "every image of the PGD subset"
    if config.strength_sampling == "random":
        return f"a fixed random sample of {n} images of the PGD subset (the same for every run)"
    return (f"the first {n} images of the PGD subset (its lowest test indices, a harder "
            f"slice of the test set than a random sample)")


def _round(a: np.ndarray, digits: int = 4) -> list:
    """Round to `digits` significant digits for compact JSON."""
    a = np.asarray(a, dtype=np.float64)
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"))(a).tolist() if a.size else []


def stage_weights(config: RunConfig, n_test: int) -> dict[str, float]:
    """Expected work of each evaluation stage, in image-gradient passes (forward + backward
    of one image; a forward pass alone counts 0.5), for progress estimates: spectra, FGSM,
    PGD (without its early stops), noise, the attack-strength check and the sensitivity
    maps. `evaluate` refines the PGD and strength-check figures from the curves measured
    before them (`early_stop_work`)."""
    n_pgd = min(config.pgd_subset or n_test, n_test)
    n_strength = min(config.strength_subset or n_pgd, n_pgd)
    return {
        "spectra": 0.5 * n_test,
        "FGSM": (1 + 0.5 * len(config.fgsm_eps)) * n_test,  # one gradient, a check per ε
        "PGD": len(config.pgd_eps) * n_pgd * config.pgd_steps,
        "white noise": 0.5 * len(config.noise_sigma) * n_test,
        "strength check": len(config.strength_eps) * n_strength
        * (config.pgd_steps + config.strength_restarts * config.strength_steps),
        "sensitivity maps": config.sensitivity_top * max(SENSITIVITY_BATCH, config.batch_size)
        if config.sensitivity_top and config.sensitivity_images else 0.0,
    }


def early_stop_work(eps: Sequence[float], known_eps: Sequence[float],
                    known_accuracy: Sequence[float], n_images: int, steps_per_image: float
                    ) -> float:
    """Expected image-gradient passes of an early-stopping attack over `eps` on `n_images`:
    one check per image and ε, plus `steps_per_image` for the images a weaker attack
    measured before it left correct (`known_accuracy` over `known_eps`, interpolated).
    A stronger attack breaks at least those images, so this is roughly an upper bound;
    without a weaker attack's curve, every image is counted as surviving."""
    if len(known_eps) == 0:
        return float(n_images * len(eps) * (1 + steps_per_image))
    order = np.argsort(known_eps)
    survivors = np.interp(np.asarray(eps, dtype=float), np.asarray(known_eps, dtype=float)[order],
                          np.asarray(known_accuracy, dtype=float)[order])  # [E] in [0, 1]
    return float(n_images * (len(survivors) + steps_per_image * survivors.sum()))


class EvaluationProgress:
    """Prints each evaluation stage as it starts, with the time left: the remaining stages'
    expected work (`stage_weights`, refined with `refine`) at the rate of the finished
    attack stages. The spectra stage is not timed into that rate (its work is not gradient
    passes), so the first estimate comes once an attack stage has finished."""

    UNRATED = ("spectra",)

    def __init__(self, weights: dict[str, float], label: str, print_fn=print,
                 clock=time.perf_counter) -> None:
        self.weights, self.label, self.print, self.clock = dict(weights), label, print_fn, clock
        self.start = self.clock()
        self.current: str | None = None
        self.current_start = self.start
        self.rated_seconds = 0.0   # time spent in finished stages outside UNRATED
        self.rated_work = 0.0      # their expected work
        self.finished: set[str] = set()

    def refine(self, name: str, work: float) -> None:
        """Replace the expected work of a stage not yet started."""
        if name in self.finished or name == self.current:
            raise ValueError(f"stage {name!r} has already started")
        self.weights[name] = float(work)

    def stage(self, name: str) -> None:
        now = self.clock()
        if self.current is not None:
            self.finished.add(self.current)
            if self.current not in self.UNRATED:
                self.rated_seconds += now - self.current_start
                self.rated_work += self.weights[self.current]
        self.current, self.current_start = name, now
        remaining = sum(w for n, w in self.weights.items() if n not in self.finished)
        left = (f", about {self.rated_seconds / self.rated_work * remaining:.0f} s left"
                if self.rated_work > 0 else "")
        index = list(self.weights).index(name) + 1
        self.print(f"  evaluating {self.label}: [{index}/{len(self.weights)}] {name} "
                   f"({now - self.start:.0f} s so far{left})", flush=True)


def evaluate(model: nn.Module, config: RunConfig, x_test: torch.Tensor, y_test: torch.Tensor,
             progress: bool = False) -> dict:
    """All per-run measurements. Returns dict(metrics=..., curves=..., spectra=..., sensitivity=...).

    progress: print each stage as it starts, with an estimate of the time left.
    """
    tracker = EvaluationProgress(stage_weights(config, len(x_test)), config.label) if progress else None

    def stage(name: str) -> None:
        if tracker is not None:
            tracker.stage(name)

    def refine(name: str, work: float) -> None:
        if tracker is not None:
            tracker.refine(name, work)

    model.eval()
    stage("spectra")
    metrics: dict[str, float] = {"clean_accuracy": accuracy(model, x_test, y_test)}
    # --- spectra of every hidden layer on the test set -------------------------------------
    depth = len(config.hidden_widths)
    hs = hidden_representations(model, x_test, list(range(1, depth + 1)))
    spectra: dict[str, list[float]] = {}
    last_vecs = None
    for l in range(1, depth + 1):  # eigenvectors only of the last layer (sensitivity maps)
        top = min(config.sensitivity_top, hs[l].shape[0] - 1, hs[l].shape[1]) if l == depth else 0
        vals, vecs = covariance_spectrum(hs[l], vectors=top)
        spectra[f"layer{l}"] = [float(v) for v in vals]
        metrics.update(spectrum_metrics(vals, f"layer{l}"))
        if l == depth and vecs is not None:
            last_vecs = vecs.float()
    del hs
    # --- attacks ---------------------------------------------------------------------------
    # Frozen whitening (see training.freeze_whitening) is per-sample: the fast path is exact.
    # Unfrozen whitening couples the images of a batch: attack whole fixed batches (naive).
    chunk = max(2000, config.batch_size)
    ra = robust_accuracy_naive if has_batch_coupling(model) else robust_accuracy
    curves: dict[str, list[float]] = {}
    stage("FGSM")
    curves["fgsm"] = ra(model, x_test, y_test, "fgsm", config.fgsm_eps, batch_size=chunk).tolist()
    x_pgd, y_pgd = subset(x_test, y_test, config.pgd_subset, seed=PGD_SUBSET_SEED) \
        if config.pgd_subset and config.pgd_subset < len(x_test) else (x_test, y_test)
    refine("PGD", early_stop_work(config.pgd_eps, config.fgsm_eps, curves["fgsm"], len(x_pgd),
                                  config.pgd_steps))
    stage("PGD")
    curves["pgd"] = ra(model, x_pgd, y_pgd, "pgd", config.pgd_eps, batch_size=chunk,
                       steps=config.pgd_steps, step_size=config.pgd_step_size).tolist()
    stage("white noise")
    curves["noise"] = robust_accuracy_naive(
        model, x_test, y_test, "noise", config.noise_sigma, batch_size=chunk,
        generator=torch.Generator().manual_seed(NOISE_SEED)).tolist()
    for name, grid in (("fgsm", config.fgsm_eps), ("pgd", config.pgd_eps)):
        for eps, acc in zip(grid, curves[name]):
            metrics[metric_name(name, eps)] = float(acc)
    if config.strength_eps:
        n_strength = min(config.strength_subset or len(x_pgd), len(x_pgd))
        refine("strength check", early_stop_work(
            config.strength_eps, config.pgd_eps, curves["pgd"], n_strength,
            config.pgd_steps + config.strength_restarts * config.strength_steps))
    stage("strength check")
    metrics.update(attack_strength_check(model, config, x_pgd, y_pgd, chunk, ra))
    # --- sensitivity maps of the last hidden layer -----------------------------------------
    sens: list = []
    if config.sensitivity_top and config.sensitivity_images:
        stage("sensitivity maps")
        batch = x_test[:max(SENSITIVITY_BATCH, config.batch_size)]
        maps = sensitivity_maps(model, batch, last_vecs, depth, last_vecs.shape[1],
                                config.sensitivity_images)
        sens = _round(maps.numpy())
    return {"metrics": metrics, "curves": curves, "spectra": spectra, "sensitivity": sens}
