"""Krotov–Hopfield networks as runs: a `RunConfig` with ``arch="kh"``, trained in two phases.

A run of this kind goes the same way as a backpropagation run (`RunConfig` -> store ->
chapter): :func:`powerlaw_lib.experiments.trained_model` builds the network with
:func:`build_kh` and trains it with :func:`train_kh`; the evaluation (spectra, FGSM,
PGD-40, noise, strength check, sensitivity maps) is the library's usual one, applied to
the differentiable :class:`~powerlaw_lib.local_learning.KrotovHopfieldNet`.

The two phases (Krotov & Hopfield 2019; Holzhausen et al. 2024):

1. **Local phase.** ``local_epochs`` epochs of the unsupervised local rule
   (:func:`~powerlaw_lib.local_learning.train_local`: p-norm currents, ranking
   activation, normalised update, ε0 = ``local_lr`` annealed linearly to 0, minibatch
   ``local_batch_size``). After every epoch the history records the convergence report,
   and after the epochs of :func:`tracked` the exponent α on the test set of two
   representations: the hidden representation
   h = relu(I)^n that the readout sees (``layer1_*``, as for every network of the book)
   and the input currents I, which Holzhausen et al. analysed (``currents_*``); each
   fitted two ways: Stringer et al. 2019's weighted fit over ranks 11..500 (``*_alpha``)
   and Holzhausen et al.'s ordinary least squares over ranks 2..500
   (``*_alpha_holzhausen``). A checkpoint after each epoch makes a killed run resume bit
   for bit.
2. **Readout phase.** The hidden layer is frozen; the linear readout on c·h is trained
   with Adam (``lr``, ``batch_size``, ``epochs`` of the config) on cross-entropy
   (:func:`~powerlaw_lib.local_learning.train_readout`); the history records the test
   accuracy after every epoch.

History rows carry ``"phase": "local"`` or ``"readout"``; the readout's rows come last,
so ``history[-1]`` is the final state as for every other run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig
from .local_learning import (KrotovHopfieldNet, LocalState, convergence, train_local,
                             train_readout)
from .spectrum import covariance, eigh_descending, fit_power_law

__all__ = ["HOLZHAUSEN_RANKS", "REPRESENTATIONS", "STORED_UNITS", "build_kh", "evaluate_kh", "hidden_alphas",
           "representation_spectra", "spectrum_fits", "tracked", "train_kh"]

#: Ranks of Holzhausen et al. 2024's power-law fit (ordinary least squares of log λ_n on
#: log n over n = 2..500 of the spectrum normalised to sum 1; the normalisation does not
#: change the slope).
HOLZHAUSEN_RANKS = (2, 500)
#: Ranks of Stringer et al. 2019's weighted fit, the book's α everywhere.
STRINGER_RANKS = (11, 500)


def build_kh(config: RunConfig) -> KrotovHopfieldNet:
    """The untrained network of ``config`` (arch "kh"): zero weights, a fresh readout.

    The readout's initial weights come from torch's global generator, as for every model
    of the library (:func:`powerlaw_lib.experiments.build` seeds it first).
    """
    if config.arch != "kh":
        raise ValueError(f"config.arch must be 'kh', got {config.arch!r}")
    c, h, w = config.input_shape
    weights = torch.zeros(config.hidden[0], c * h * w)  # [K, D], set by train_kh
    return KrotovHopfieldNet(weights, config.n_classes, p=config.local_p,
                             power=config.readout_power, input_norm=config.input_norm)


#: Representation -> metric prefix: h = relu(I)^n, the hidden representation the readout
#: sees and the library's "layer1" as for every network; and the input currents I, the
#: representation whose spectrum Holzhausen et al. fitted.
REPRESENTATIONS = {"hidden": "layer1", "currents": "currents"}


@torch.no_grad()
def representation_spectra(net: KrotovHopfieldNet, x: torch.Tensor, chunk: int = 5000
                           ) -> dict[str, np.ndarray]:
    """Covariance eigenvalues (descending) of h and of I over ``x [n, ...]``."""
    out = {}
    for name, fn in (("hidden", net.hidden), ("currents", net.input_currents)):
        h = torch.cat([fn(x[i:i + chunk]) for i in range(0, len(x), chunk)])  # [n, K]
        out[name] = eigh_descending(covariance(h))[0].numpy()
    return out


def spectrum_fits(eigenvalues: np.ndarray, prefix: str) -> dict[str, float]:
    """``<prefix>_alpha`` (Stringer's fit) and ``<prefix>_alpha_holzhausen`` of a spectrum."""
    positive = int((eigenvalues > 0).sum())
    out = {}
    for suffix, (lo, hi), weighted in (("alpha", STRINGER_RANKS, True),
                                       ("alpha_holzhausen", HOLZHAUSEN_RANKS, False)):
        hi = min(hi, positive)
        out[f"{prefix}_{suffix}"] = (
            float(fit_power_law(eigenvalues, ranks=(lo, hi), weighted=weighted).alpha)
            if hi >= lo + 2 else float("nan"))
    return out


def hidden_alphas(net: KrotovHopfieldNet, x: torch.Tensor,
                  spectra: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Both fits of both representations' spectra over ``x`` (keys: see `spectrum_fits`);
    ``spectra``: their `representation_spectra` when already computed."""
    spectra = spectra if spectra is not None else representation_spectra(net, x)
    return {k: v for name, prefix in REPRESENTATIONS.items()
            for k, v in spectrum_fits(spectra[name], prefix).items()}


#: Hidden units whose weights a KH run stores, as images: the first ones, a random sample
#: (the initial weights are i.i.d.).
STORED_UNITS = 25


def evaluate_kh(net: KrotovHopfieldNet, config: RunConfig, x_test: torch.Tensor
                ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, list]]:
    """What a KH run stores beyond the library's evaluation (metrics, spectra, weights).

    Metrics: both fits of both spectra on the test set, and the final convergence report
    (``converged_fraction``: units within 0.05 of unit p-norm). Spectra: the input
    currents' (``currents``). Weights: units ``0..STORED_UNITS-1`` as images
    ``[unit][C][H][W]`` (4 significant digits) with their p-norms.
    """
    spectra = representation_spectra(net, x_test)
    metrics = hidden_alphas(net, x_test, spectra)
    report = convergence(net.weights, net.p)
    metrics.update({"converged_fraction": report.fraction,
                    "mean_norm_deviation": report.mean_deviation})
    units = list(range(min(STORED_UNITS, net.weights.shape[0])))
    W = net.weights[units].reshape(len(units), *config.input_shape)  # [units, C, H, W]
    norms = net.weights[units].abs().pow(net.p).sum(1).pow(1 / net.p)  # [units]
    weights = {"units": units, "p_norms": [float(f"{v:.4g}") for v in norms.tolist()],
               "weights": _significant(W.numpy(), 4)}
    return metrics, {"currents": [float(v) for v in spectra["currents"]]}, weights


def _significant(a: np.ndarray, digits: int) -> list:
    """Nested lists of ``a`` rounded to ``digits`` significant digits (for JSON)."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(a).tolist()


#: Epochs of the local phase whose spectra are measured: the first `TRACK_FIRST`, then
#: about `TRACK_POINTS` evenly spaced ones, and the last.
TRACK_FIRST, TRACK_POINTS = 10, 25


def tracked(epoch: int, epochs: int) -> bool:
    """Whether the spectra are measured after 1-based ``epoch`` of ``epochs``."""
    return epoch <= TRACK_FIRST or epoch % max(1, epochs // TRACK_POINTS) == 0 or epoch == epochs


def _save(path: Path, key: str, state: LocalState) -> None:
    """Write the local phase's state atomically (a killed write leaves the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "epochs_done": len(state.history), "W": state.W,
                "generator_state": state.generator_state, "history": state.history}, tmp)
    os.replace(tmp, path)


def _load(path: Path | None, key: str) -> LocalState | None:
    if path is None or not path.exists():
        return None
    blob = torch.load(path, weights_only=False, map_location="cpu")
    if blob.get("key") != key:
        return None
    return LocalState(blob["W"], blob["generator_state"], blob["history"])


def train_kh(model: KrotovHopfieldNet, config: RunConfig, x_train: torch.Tensor,
             y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
             checkpoint: Path | None = None, progress: bool = True,
             stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train ``model`` (from :func:`build_kh`) as ``config`` says; return the history.

    ``x_* [n, C, H, W]`` in [0, 1], ``y_* [n]`` int64. With ``checkpoint``, the local
    phase's state is saved there after every epoch and training resumes from it.
    ``stop_after`` ends the local phase after that many epochs of this call and returns
    its history so far (shorter than ``config.local_epochs`` + ``config.epochs``).
    """
    from tqdm import tqdm

    resume = _load(checkpoint, config.key)
    done_here = 0
    bar = tqdm(total=config.local_epochs, initial=len(resume.history) if resume else 0,
               desc=f"{config.label} (local rule)", disable=not progress, leave=False)

    class _Stop(Exception):
        pass

    def measure(epoch: int, W: torch.Tensor, row: dict[str, Any]) -> None:
        row["phase"] = "local"
        if tracked(epoch, config.local_epochs):
            model.set_weights(W)
            row.update(hidden_alphas(model, x_test))
        bar.update(1)
        bar.set_postfix(converged=f"{row['converged_fraction']:.3f}")

    def keep(state: LocalState) -> None:
        nonlocal done_here
        if checkpoint is not None:
            _save(checkpoint, config.key, state)
        done_here += 1
        if stop_after is not None and done_here >= stop_after:
            raise _Stop(state)

    try:
        W, local_history = train_local(
            x_train, hidden=config.hidden[0], p=config.local_p, k=config.local_k,
            delta=config.local_delta, lr=config.local_lr, epochs=config.local_epochs,
            batch_size=config.local_batch_size, seed=config.seed, input_norm=config.input_norm,
            callback=measure, resume=resume, on_state=keep)
    except _Stop as stop:
        bar.close()
        return stop.args[0].history
    bar.close()
    model.set_weights(W)
    readout = train_readout(model, x_train, y_train, epochs=config.epochs, lr=config.lr,
                            batch_size=config.batch_size, seed=config.seed,
                            x_test=x_test, y_test=y_test)
    return local_history + [{"phase": "readout", **row} for row in readout]
