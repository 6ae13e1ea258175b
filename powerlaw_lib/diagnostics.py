"""Diagnostics of the spectral regularizer's training scheme (Nassar et al. 2020, §3).

The regularizer needs the eigenvalues of every batch's covariance, but an `eigh` per batch
is expensive. Nassar et al. instead fix the eigenvectors V of the full-training-set
covariance at the start of each epoch and use, within the epoch, the batch Rayleigh
quotients λ̂_n = (Vᵀ Σ_B V)_nn. `track_rayleigh_quotients` measures, during a real training
run, how far those quotients (and the penalty computed from them) are from the exact batch
eigenvalues: once with the basis of the epoch's start (what training used, i.e. after a full
epoch of weight updates: the worst case) and once with a basis refreshed at that moment.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import methods
from .config import RunConfig
from .experiments import (TrainingNotAllowedError, build, load_data, provenance,
                          seed_everything)
from .methods import refresh_eigenvectors
from .regularizers import SpectralRegularizer, spectral_penalty
from .spectrum import covariance
from .store import atomic_write_text
from .training import train

PROBE_SEED = 12345


@dataclass
class RayleighTracking:
    """Per epoch: errors of the Rayleigh-quotient eigenvalues against exact batch eigenvalues.

    Per-epoch arrays are averaged over the probe batches.
    `stale_error`, `fresh_error` [E, len(bands)]: median over the ranks of each band of
    |λ̂_n − λ_n| / λ_n (sorted spectra, λ_n the exact batch eigenvalues).
    `penalty_*` [E]: the eq. 2 penalty from exact eigenvalues / stale / fresh quotients.
    `last_*` [N]: after the last epoch, for the first probe batch: exact batch eigenvalues,
    stale quotients, and the eigenvalues of the full-training-set covariance.
    """

    epochs: np.ndarray
    bands: tuple[tuple[int, int], ...]
    stale_error: np.ndarray
    fresh_error: np.ndarray
    penalty_exact: np.ndarray
    penalty_stale: np.ndarray
    penalty_fresh: np.ndarray
    last_exact: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    last_stale: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    last_full: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    history: list = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: arrays as lists."""
        return {f.name: (getattr(self, f.name).tolist() if isinstance(getattr(self, f.name), np.ndarray)
                         else getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "RayleighTracking":
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(tuple(b) for b in v) if k == "bands"
                          else v if kinds[k] in ("list",) else np.asarray(v, dtype=float))
                      for k, v in d.items()})


def stored_rayleigh_tracking(config: RunConfig, folder: str | Path, *,
                             allow_training: bool = False) -> RayleighTracking:
    """`track_rayleigh_quotients(config)`, kept in `folder` as ``rayleigh_<key>.json``.

    A stored tracking is read back; otherwise the tracking run trains (only with
    `allow_training`, else `experiments.TrainingNotAllowedError` says what would train) and
    its measurements are written atomically, with the provenance of the code that made them.
    """
    path = Path(folder) / f"rayleigh_{config.key}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return RayleighTracking.from_dict(data["tracking"])
    if not allow_training:
        raise TrainingNotAllowedError(
            f"the Rayleigh-quotient tracking run {config.label} ({config.key}) is not stored "
            f"in {folder} and would train {config.epochs} epochs; allow training "
            "(chapter parameter allow_training=True) to run it")
    t0 = time.perf_counter()
    tracking = track_rayleigh_quotients(config)
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"config": config.to_dict(), "key": config.key,
              "provenance": provenance({"train_total": time.perf_counter() - t0}),
              "tracking": tracking.to_dict()}
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return tracking


def rank_bands(width: int, edges: tuple[int, ...] = (10, 50, 200)) -> tuple[tuple[int, int], ...]:
    """1-based inclusive rank bands (1..10, 11..50, 51..200, 201..width), clipped to width."""
    lows = (1, *(e + 1 for e in edges))
    highs = (*edges, width)
    return tuple((lo, min(hi, width)) for lo, hi in zip(lows, highs) if lo <= width)


def _band_errors(approx: torch.Tensor, exact: torch.Tensor, bands) -> list[float]:
    rel = (approx.double() - exact.double()).abs() / exact.double().clamp_min(1e-30)  # [N]
    return [float(rel[lo - 1:hi].median()) for lo, hi in bands]


def track_rayleigh_quotients(config: RunConfig, probe_batches: int = 2) -> RayleighTracking:
    """Train `config` (a spectral run; nothing is stored) and measure the quotients each epoch.

    The probe batches are fixed random batches of the training set, of the training batch
    size, pushed through a copy of the model in training mode (as in a training step, so
    batch norm uses batch statistics) without touching the model being trained.
    """
    if not isinstance(config.method, methods.spectral.Spectral):
        raise ValueError("config.regularizer must be 'spectral' to track its Rayleigh quotients")
    seed_everything(config.seed)
    x_tr, y_tr, x_te, y_te = load_data(config)
    model = build(config)
    layer = config.reg_layers[-1]
    gen = torch.Generator().manual_seed(PROBE_SEED)
    probes = [torch.randperm(len(x_tr), generator=gen)[:config.batch_size]
              for _ in range(probe_batches)]
    bands = rank_bands(config.hidden_widths[layer - 1])
    rows: list[np.ndarray] = []
    last: dict[str, np.ndarray] = {}

    def measure(_epoch: int, trained: torch.nn.Module, penalty) -> None:
        probe_model = copy.deepcopy(trained)      # training-mode forward must not touch BN stats
        fresh = SpectralRegularizer(config.alpha, config.tau, config.beta)
        refresh_eigenvectors(probe_model, {layer: fresh}, x_tr, config.precision)
        stale = penalty.regularizers[layer]  # refreshed at this epoch's start
        vals = []
        probe_model.train()
        with torch.no_grad():
            for i, idx in enumerate(probes):
                _, hs = probe_model.forward_with_hidden(x_tr[idx])
                h = hs[layer - 1]                                           # [B, N]
                exact = torch.linalg.eigvalsh(covariance(h)).flip(0)       # [N] float64
                q_stale, q_fresh = stale.rayleigh_quotients(h), fresh.rayleigh_quotients(h)
                pen = [float(spectral_penalty(s, config.alpha, config.tau, config.beta))
                       for s in (exact, q_stale, q_fresh)]
                vals.append([*_band_errors(q_stale, exact, bands),
                             *_band_errors(q_fresh, exact, bands), *pen])
                if i == 0:
                    last.update(exact=exact.numpy(), stale=q_stale.double().numpy(),
                                full=fresh.basis.eigenvalues.double().numpy())
        rows.append(np.mean(vals, axis=0))

    history = train(model, config, x_tr, y_tr, x_te, y_te, progress=False, on_epoch_end=measure)
    a = np.array(rows, dtype=float)  # [E, 2 * bands + 3]
    nb = len(bands)
    return RayleighTracking(np.arange(1, len(a) + 1), bands, a[:, :nb], a[:, nb:2 * nb],
                            a[:, -3], a[:, -2], a[:, -1], last["exact"], last["stale"],
                            last["full"], history)


def batch_with_spectrum(eigenvalues: np.ndarray, batch: int, seed: int = 0) -> torch.Tensor:
    """Activations [batch, N] whose batch covariance has EXACTLY the given eigenvalues.

    Centred Gaussian draws are orthonormalised (QR) so their sample covariance is the
    identity, scaled by sqrt(λ_n), and rotated by a random orthogonal matrix (eigenvectors
    not axis-aligned). Needs batch > N.
    """
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64))
    width = lam.numel()
    if batch <= width:
        raise ValueError(f"batch must exceed the width {width} for a full-rank covariance, "
                         f"got {batch}")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    z = z - z.mean(0)
    q, _ = torch.linalg.qr(z)                                 # [B, N], orthonormal columns
    rot, _ = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64))
    return (q * (batch - 1) ** 0.5 * lam.sqrt()) @ rot.T      # [B, N]


def penalties_vs_exponent(true_alphas, target_alpha: float = 1.0, width: int = 500,
                          batch: int = 750, tau: int = 10, slope_ranks: tuple[int, int] = (6, 50),
                          seed: int = 0) -> dict[str, np.ndarray]:
    """The three penalties (β = 1) on batches whose spectrum is exactly n^-α_true.

    Returns arrays over `true_alphas` for: "spectral" (Nassar et al. 2020, eq. 2, quotients
    in a basis refreshed on the batch itself, i.e. the exact eigenvalues), "slope"
    (Gerum et al. 2022, |α̂ − α*|), "slope-mse" (mean squared distance of log λ_n to the best
    line of slope −α*), and "fitted_alpha" (α̂ of the slope fit over `slope_ranks`).
    """
    from .regularizers import SlopeRegularizer

    out: dict[str, list[float]] = {"spectral": [], "slope": [], "slope-mse": [],
                                   "fitted_alpha": []}
    spec = SpectralRegularizer(target_alpha, tau, 1.0)
    slope = SlopeRegularizer(target_alpha, 1.0, ranks=slope_ranks, mode="abs")
    mse = SlopeRegularizer(target_alpha, 1.0, ranks=slope_ranks, mode="mse")
    ranks = np.arange(1, width + 1, dtype=np.float64)
    for a in true_alphas:
        h = batch_with_spectrum(ranks ** -float(a), batch, seed)
        spec.refresh(h)
        out["spectral"].append(float(spec(h)))
        out["slope"].append(float(slope(h)))
        out["slope-mse"].append(float(mse(h)))
        out["fitted_alpha"].append(slope.fitted_alpha(h))
    return {k: np.asarray(v) for k, v in out.items()} | {"true_alpha": np.asarray(true_alphas,
                                                                                  dtype=float)}
