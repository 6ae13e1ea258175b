"""Krotov–Hopfield local learning: unsupervised hidden units that compete for the inputs.

References
----------
Krotov & Hopfield (2019), "Unsupervised learning by competing hidden units", PNAS 116,
7723-7731 (K&H below): the plasticity rule with its p-norm metric, the ranking
activation with anti-Hebbian strength Δ, the convergence of the weights' p-norms, and the
readout f(I) = relu(I)^n trained with backpropagation on top of the frozen weights.

Holzhausen, Merlid, Torvik, Malthe-Sørenssen, Lepperød (2024), "Exploring biologically
inspired mechanisms of adversarial robustness", arXiv:2405.00679: the same two-layer
model, whose hidden representation h has a power-law covariance spectrum.

The model
---------
The equations are labelled (KH1)-(KH5) here (K&H state them in their description of
the learning rule and of the supervised readout). Hidden units μ = 1..K have weights
W ``[K, D]``. The input current of unit μ for an input v ``[D]`` is the p-inner product::

    (KH1)  I_μ = ⟨W_μ, v⟩_p = Σ_i sign(W_μi) |W_μi|^(p-1) v_i,

so with M = sign(W)|W|^(p-1) ``[K, D]`` the currents of a batch V ``[B, D]`` are V Mᵀ.
The ranking activation of one sample::

    (KH2)  g_μ = 1 if I_μ is the largest current, -Δ if it is the k-th largest, else 0.

The minibatch update of the plasticity rule::

    (KH3)  ΔW_μ = Σ_b g_μ(b) (v_b - I_μ(b) W_μ),

divided by its largest absolute entry and applied with a learning rate annealed
linearly to zero, ε_e = ε0 (1 - e / epochs) for 0-based epoch e: W ← W + ε_e ΔW / max|ΔW|.
Since ⟨W_μ, W_μ⟩_p = ‖W_μ‖_p^p, the update satisfies::

    (KH4)  ⟨W_μ, ΔW_μ⟩_p = (Σ_b g_μ(b) I_μ(b)) (1 - ‖W_μ‖_p^p),

so the p-norm of every unit that takes part in the competition with a positive drive
Σ_b g_μ(b) I_μ(b) (typically a unit that wins often) is driven to ‖W_μ‖_p = 1.
:func:`convergence` reports how many units got there. The readout uses::

    (KH5)  h_μ = relu(I_μ)^n   (n = 4.5).

Input scaling
-------------
Every input is flattened and divided by its own norm before training and in the
network's forward pass (``input_norm``: 2 by default, any order >= 1, or None to keep
the inputs as given). Scaling by a per-sample norm makes the winner of the competition,
and the direction of h, independent of the overall intensity of an image, and bounds the
currents: with ‖W_μ‖_p = 1 and unit-L2 inputs, |I_μ| <= ‖v‖_p <= ‖v‖_2 = 1 for p >= 2
(Hölder). Without it (``input_norm=None``) the current scale follows the pixel
intensities of the data set. The norm of the weights converges to 1 whatever the input
scaling; the rule itself is unchanged.

Readout
-------
:class:`KrotovHopfieldNet` freezes W and classifies with a linear layer on
h = relu(I)^n (K&H: n = 4.5), trained with Adam on cross-entropy (:func:`train_readout`).
Because |I| <= 1, h is small; a constant gain fixed on the training set before the
readout trains (:meth:`KrotovHopfieldNet.calibrate`) keeps Adam's steps in scale. The
network is differentiable in its input, so FGSM / PGD and the spectra of h apply.

Paper values
------------
K = 2000 hidden units, p = 3, Δ = 0.4, minibatch 100, weights initialised from a standard
normal; k = 7 and ε0 = 0.04 for MNIST, k = 2 and ε0 = 0.02 for CIFAR-10
(:data:`PAPER_SETTINGS`); readout power n = 4.5.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_int as _check_int

__all__ = [
    "PAPER_SETTINGS",
    "Convergence",
    "KrotovHopfieldNet",
    "LocalState",
    "annealed_lr",
    "convergence",
    "current_matrix",
    "currents",
    "local_update",
    "normalize_inputs",
    "ranking_activation",
    "train_local",
    "train_readout",
]

#: Data set -> the papers' ranking parameter k and initial learning rate ε0 (K&H 2019).
PAPER_SETTINGS: dict[str, dict[str, float]] = {
    "mnist": {"k": 7, "lr": 0.04},
    "cifar10": {"k": 2, "lr": 0.02},
}

#: Norms below this are treated as zero (inputs) and max|ΔW| is never divided by less.
_TINY = 1e-30
#: Rows per chunk when a whole data set is pushed through the hidden layer.
_CHUNK = 5000


# ----------------------------------------------------------------------------- validation


def _check_real(name: str, value: object, low: float, *, strict: bool = False,
                allow_inf: bool = False) -> float:
    """A real number >= low (> low when strict); finite unless allow_inf."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)  # type: ignore[arg-type]
        ok = not math.isnan(value) and (allow_inf or math.isfinite(value))
        ok = ok and (value > low if strict else value >= low)
    if not ok:
        kind = "a number" if allow_inf else "a finite number"
        raise ValueError(f"{name} must be {kind} {'>' if strict else '>='} {low}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_p(p: object) -> float:
    """K&H use p >= 2 (p = 2 is the Euclidean metric)."""
    return _check_real("p", p, 2.0)


def _check_input_norm(input_norm: object) -> float | None:
    if input_norm is None:
        return None
    return _check_real("input_norm", input_norm, 1.0, allow_inf=True)


def _describe(a: object) -> str:
    """Shape and dtype of a tensor, else the type name, for error messages."""
    return f"{tuple(a.shape)} {a.dtype}" if isinstance(a, torch.Tensor) else type(a).__name__


def _check_inputs(name: str, x: object) -> torch.Tensor:
    """A floating tensor ``[n, ...]`` with n >= 1 and at least one feature per sample."""
    if (not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2
            or x.shape[0] < 1 or x[0].numel() < 1):
        raise ValueError(f"{name} must be a floating-point torch.Tensor [n, ...] with n >= 1, "
                         f"got {_describe(x)}")
    return x


def _check_matrix(name: str, a: object, width: int | None = None) -> torch.Tensor:
    """A finite floating tensor ``[rows, width]`` with rows >= 1."""
    if not isinstance(a, torch.Tensor) or not a.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {_describe(a)}")
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1 or (width is not None and a.shape[1] != width):
        expected = f"[rows >= 1, {width}]" if width is not None else "[rows >= 1, columns >= 1]"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


# ----------------------------------------------------------------------------- the rule


def normalize_inputs(x: torch.Tensor, input_norm: float | None = 2.0) -> torch.Tensor:
    """Flatten ``x [B, ...]`` to ``[B, D]`` and divide each row by its ``input_norm``-norm.

    ``input_norm`` is the order of the norm (>= 1, ``math.inf`` allowed) or None to only
    flatten. All-zero rows stay zero (the norm is floored at 1e-30). Differentiable.
    """
    input_norm = _check_input_norm(input_norm)
    x = _check_inputs("x", x)
    v = x.reshape(x.shape[0], -1)  # [B, D]
    if input_norm is None:
        return v
    return F.normalize(v, p=input_norm, dim=1, eps=_TINY)  # v_b / max(‖v_b‖, eps)


def current_matrix(W: torch.Tensor, p: float) -> torch.Tensor:
    """M = sign(W) |W|^(p-1) ``[K, D]``: the p-metric weights, so that I = V Mᵀ (KH1)."""
    p = _check_p(p)
    _check_matrix("W", W)
    return _current_matrix(W, p)


def _current_matrix(W: torch.Tensor, p: float) -> torch.Tensor:
    if p == 2.0:
        return W
    if p == 3.0:
        return W * W.abs()  # [K, D], the papers' p without a general power
    return W.abs().pow(p - 1.0).mul_(W.sign())  # [K, D]


def currents(W: torch.Tensor, V: torch.Tensor, p: float) -> torch.Tensor:
    """Input currents I ``[B, K]``, I[b, μ] = ⟨W_μ, v_b⟩_p (K&H, (KH1)).

    Parameters
    ----------
    W : torch.Tensor
        Weights ``[K, D]``.
    V : torch.Tensor
        Inputs ``[B, D]`` (used as given: scale them with :func:`normalize_inputs`).
    p : float
        Order of the metric (>= 2).
    """
    p = _check_p(p)
    W = _check_matrix("W", W)
    V = _check_matrix("V", V, width=W.shape[1])
    return V @ _current_matrix(W, p).mT  # [B, K]


def _ranked_units(current: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``[B]`` of the units ranked first and k-th by current in each sample.

    The ranks of a stable descending sort (among equal currents the lower unit index
    ranks higher), without sorting: ``argmax`` returns the first maximum, and the k-th
    ranked unit is found from the k-th largest value t (``topk``'s values are exact even
    where its indices among ties are not): with m units above t, it is the (k - m)-th
    unit, in index order, whose current equals t.
    """
    first = current.argmax(dim=1)  # [B], first index among equal maxima
    threshold = current.topk(k, dim=1).values[:, k - 1:]  # [B, 1], k-th largest value
    above = (current > threshold).sum(dim=1, keepdim=True)  # [B, 1], m < k
    equal = current == threshold  # [B, K]
    position = equal.cumsum(dim=1)  # [B, K], 1-based position among the ties
    kth = (equal & (position == k - above)).byte().argmax(dim=1)  # [B]
    return first, kth


def ranking_activation(currents: torch.Tensor, k: int, delta: float) -> torch.Tensor:
    """Ranking activation g ``[B, K]`` of K&H, (KH2).

    Per sample (row) the unit with the largest current gets +1, the unit ranked k-th gets
    ``-delta``, every other unit 0. Ties are broken deterministically: among equal
    currents the unit with the lower index ranks higher.

    Parameters
    ----------
    currents : torch.Tensor
        ``[B, K]`` input currents (:func:`currents`).
    k : int
        Rank of the anti-Hebbian unit, in [2, K] (papers: 7 for MNIST, 2 for CIFAR-10).
    delta : float
        Strength Δ >= 0 of the anti-Hebbian term (papers: 0.4).
    """
    currents = _check_matrix("currents", currents)
    k = _check_int("k", k, 2, currents.shape[1])
    delta = _check_real("delta", delta, 0.0)
    first, kth = _ranked_units(currents, k)
    rows = torch.arange(currents.shape[0], device=currents.device)
    g = torch.zeros_like(currents)  # [B, K]
    g[rows, first] = 1.0
    g[rows, kth] = -delta
    return g


def _local_update(W: torch.Tensor, V: torch.Tensor, p: float, k: int, delta: float) -> torch.Tensor:
    """Unchecked :func:`local_update`; W ``[K, D]``, V ``[B, D]``."""
    current = V @ _current_matrix(W, p).mT  # [B, K]
    first, kth = _ranked_units(current, k)  # [B], [B]
    rows = torch.arange(V.shape[0], device=V.device)
    # Σ_b g_μ(b) v_b = gᵀV: g has one +1 and one -Δ per row, so scatter-add the rows of V
    hebb = torch.zeros_like(W).index_add_(0, first, V)  # [K, D]
    hebb.index_add_(0, kth, V, alpha=-delta)
    # Σ_b g_μ(b) I_μ(b)
    drive = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)  # [K]
    drive.index_add_(0, first, current[rows, first])
    drive.index_add_(0, kth, current[rows, kth], alpha=-delta)
    update = hebb.addcmul_(drive[:, None], W, value=-1.0)  # [K, D], gᵀV - diag(drive) W
    low, high = torch.aminmax(update)
    return update.div_(torch.maximum(high, -low).clamp_min(_TINY))


def local_update(W: torch.Tensor, V: torch.Tensor, p: float, k: int, delta: float) -> torch.Tensor:
    """Normalised minibatch update ΔW / max|ΔW| ``[K, D]`` of K&H, (KH3).

    ΔW_μ = Σ_b g_μ(b) (v_b - I_μ(b) W_μ) with g the :func:`ranking_activation` of the
    currents I = :func:`currents`, i.e. ΔW = gᵀV - diag(Σ_b g(b) ⊙ I(b)) W, divided by
    its largest absolute entry (an all-zero update is returned as zeros). Vectorised: the
    sparse gᵀV is a scatter-add of the input rows. Apply it as ``W + lr * local_update(...)``.

    Parameters
    ----------
    W : torch.Tensor
        Weights ``[K, D]``.
    V : torch.Tensor
        Minibatch ``[B, D]`` (used as given; :func:`train_local` scales it first).
    p : float
        Order of the metric (>= 2; papers: 3).
    k : int
        Rank of the anti-Hebbian unit, in [2, K].
    delta : float
        Anti-Hebbian strength Δ >= 0 (papers: 0.4).
    """
    p = _check_p(p)
    W = _check_matrix("W", W)
    V = _check_matrix("V", V, width=W.shape[1])
    if V.dtype != W.dtype:
        raise ValueError(f"V must have the dtype of W ({W.dtype}), got {V.dtype}")
    k = _check_int("k", k, 2, W.shape[0])
    delta = _check_real("delta", delta, 0.0)
    return _local_update(W, V, p, k, delta)


def annealed_lr(lr: float, epoch: int, epochs: int) -> float:
    """ε_e = ε0 (1 - e / epochs) for the 0-based epoch e: linear decay towards 0 (K&H)."""
    return lr * (1.0 - epoch / epochs)


# ----------------------------------------------------------------------------- convergence


class Convergence(NamedTuple):
    """How close the units' p-norms are to the fixed point ‖W_μ‖_p = 1."""

    fraction: float  # share of units with |‖W_μ‖_p - 1| <= tol
    mean_deviation: float  # mean over units of |‖W_μ‖_p - 1|
    max_deviation: float  # largest |‖W_μ‖_p - 1|


def convergence(W: torch.Tensor, p: float, tol: float = 0.05) -> Convergence:
    """Convergence report of the weights ``W [K, D]`` to unit p-norm (K&H, (KH4)).

    Units that never win nor rank k-th are not updated and keep their initial norm, so
    ``fraction`` below 1 after long training points to such idle units (or to units
    mostly ranked k-th, whose drive in (KH4) is negative).

    Parameters
    ----------
    W : torch.Tensor
        Weights ``[K, D]``.
    p : float
        Order of the norm (>= 2), the p of the learning rule.
    tol : float
        Largest |‖W_μ‖_p - 1| counted as converged (> 0).
    """
    p = _check_p(p)
    W = _check_matrix("W", W)
    tol = _check_real("tol", tol, 0.0, strict=True)
    deviation = (torch.linalg.vector_norm(W.double(), ord=p, dim=1) - 1.0).abs()  # [K]
    return Convergence(float((deviation <= tol).double().mean()), float(deviation.mean()),
                       float(deviation.max()))


# ----------------------------------------------------------------------------- training


class LocalState(NamedTuple):
    """Everything :func:`train_local` needs to continue where it stopped.

    ``W [K, D]`` after ``len(history)`` epochs, the state of the run's generator
    (``torch.Generator.get_state()``) at that point, and the history so far. Resuming
    from it gives bit for bit the weights of an uninterrupted run.
    """

    W: torch.Tensor
    generator_state: torch.Tensor
    history: list[dict[str, float]]


def train_local(
    x_train: torch.Tensor,
    hidden: int = 2000,
    p: float = 3.0,
    k: int = 7,
    delta: float = 0.4,
    lr: float = 0.04,
    epochs: int = 100,
    batch_size: int = 100,
    seed: int = 0,
    *,
    input_norm: float | None = 2.0,
    tol: float = 0.05,
    callback: Callable[[int, torch.Tensor, dict[str, float]], None] | None = None,
    resume: LocalState | None = None,
    on_state: Callable[[LocalState], None] | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Train K&H hidden units on ``x_train`` with the local rule; return W and the history.

    Each epoch visits the (scaled) inputs in a fresh random order in minibatches of
    ``batch_size`` (an incomplete last batch is dropped) and applies
    ``W += ε_e · local_update(W, V, p, k, delta)`` with ε_e = :func:`annealed_lr`.
    Everything random (the standard-normal initial W, the batch orders) comes from one
    ``torch.Generator`` seeded with ``seed``: the same arguments give the same W.
    Computation runs in the dtype of ``x_train`` (float32 for :func:`powerlaw_lib.data.load`).

    Parameters
    ----------
    x_train : torch.Tensor
        ``[n, ...]`` floating inputs, e.g. NCHW images in [0, 1]; flattened to ``[n, D]``.
    hidden : int
        Number K of hidden units (paper: 2000), >= k.
    p : float
        Order of the metric (>= 2; paper: 3).
    k : int
        Rank of the anti-Hebbian unit in [2, hidden] (paper: 7 for MNIST, 2 for CIFAR-10).
    delta : float
        Anti-Hebbian strength Δ >= 0 (paper: 0.4).
    lr : float
        Initial learning rate ε0 > 0 (paper: 0.04 for MNIST, 0.02 for CIFAR-10).
    epochs : int
        Number of epochs (>= 1); the learning rate reaches 0 after the last. Check
        :func:`convergence` (in the history) to choose it.
    batch_size : int
        Minibatch size (>= 1; paper: 100); capped at n.
    seed : int
        Seed of the generator.
    input_norm : float or None
        Order of the per-sample norm each input is divided by (default 2, see the module
        docstring), or None to use the inputs as given.
    tol : float
        Tolerance of the convergence report in the history.
    callback : callable, optional
        ``callback(epoch, W, row)`` after each epoch (1-based epoch; W is the live tensor
        and must not be changed; row is the history entry, to which the callback may add
        measurements of its own, e.g. the spectrum's exponent).
    resume : LocalState, optional
        Continue a run with the same arguments from this state (from ``on_state``).
    on_state : callable, optional
        ``on_state(state)`` after each epoch (and its callback) with the
        :class:`LocalState` to resume from, e.g. to write a checkpoint.

    Returns
    -------
    (W, history)
        W ``[hidden, D]``; history has one dict per epoch with ``epoch``, ``lr`` (ε_e used),
        ``converged_fraction``, ``mean_deviation``, ``max_deviation`` (see
        :class:`Convergence`) and ``seconds``.
    """
    p = _check_p(p)
    hidden = _check_int("hidden", hidden, 2)
    k = _check_int("k", k, 2, hidden)
    delta = _check_real("delta", delta, 0.0)
    lr = _check_real("lr", lr, 0.0, strict=True)
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    tol = _check_real("tol", tol, 0.0, strict=True)
    for name, fn in (("callback", callback), ("on_state", on_state)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be callable or None, got {type(fn).__name__}")
    _check_inputs("x_train", x_train)
    V_all = _check_matrix("x_train", normalize_inputs(x_train, input_norm))  # [n, D]

    n, dim = V_all.shape
    bs = min(batch_size, n)
    n_batches = n // bs
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(hidden, dim, generator=generator, dtype=V_all.dtype).to(V_all.device)  # [K, D]
    history: list[dict[str, float]] = []
    if resume is not None:
        if (not isinstance(resume, LocalState) or tuple(resume.W.shape) != (hidden, dim)
                or len(resume.history) > epochs):
            raise ValueError(f"resume must be a LocalState of weights [{hidden}, {dim}] after at "
                             f"most {epochs} epochs, got {type(resume).__name__}")
        W = resume.W.to(V_all.dtype).to(V_all.device).clone()
        generator.set_state(resume.generator_state)
        history = [dict(row) for row in resume.history]
    for epoch in range(len(history), epochs):
        t0 = time.perf_counter()
        eps = annealed_lr(lr, epoch, epochs)
        order = torch.randperm(n, generator=generator).to(V_all.device)  # [n]
        for b in range(n_batches):
            V = V_all.index_select(0, order[b * bs:(b + 1) * bs])  # [B, D]
            W.add_(_local_update(W, V, p, k, delta), alpha=eps)
        report = convergence(W, p, tol)
        row = {"epoch": epoch + 1, "lr": eps, "converged_fraction": report.fraction,
               "mean_deviation": report.mean_deviation, "max_deviation": report.max_deviation,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if callback is not None:
            callback(epoch + 1, W, row)
        if on_state is not None:
            on_state(LocalState(W.clone(), generator.get_state(), [dict(r) for r in history]))
    return W, history


# ----------------------------------------------------------------------------- classifier


class KrotovHopfieldNet(nn.Module):
    """Frozen K&H hidden layer with a trainable linear readout (K&H 2019; Holzhausen et al. 2024).

    ``x [B, ...] -> v = x / ‖x‖ -> I = v Mᵀ -> h = relu(I)^n (KH5) -> logits = S (c h) + b`` with
    M = sign(W)|W|^(p-1) precomputed from the frozen weights W (buffers ``weights`` and
    ``metric``, not parameters: only the readout S, b trains). The map is differentiable
    with respect to x, so the library's attacks, spectra and evaluation apply; like
    :class:`powerlaw_lib.models.MLP`, :meth:`forward_with_hidden` returns the hidden
    representation h ``[B, K]`` (without the gain c).

    The gain c (buffer ``gain``, 1 until :meth:`calibrate`) is a constant: S c is still a
    linear readout of h. It exists for the optimiser: with unit-norm inputs and converged
    weights |I_μ| <= 1, so h = relu(I)^4.5 is of order 1e-3 and a readout on h itself needs
    weights of order 1e3, which Adam with its usual learning rates reaches only after very
    many steps. :meth:`calibrate` sets c = 1 / RMS(h) over a reference set (the training
    set); :func:`train_readout` calls it. Call it before training the readout with any
    other loop (e.g. :func:`powerlaw_lib.training.train`).

    Parameters
    ----------
    weights : torch.Tensor
        W ``[K, D]`` from :func:`train_local` (copied, float32).
    n_classes : int
        Number of logits (>= 2).
    p : float
        Order of the metric W was trained with (>= 2).
    power : float
        Exponent n >= 1 of the rectified currents (papers: 4.5); n >= 1 keeps the input
        gradient finite where a current is 0.
    input_norm : float or None
        The per-sample input scaling used in training (:func:`normalize_inputs`).
    """

    def __init__(self, weights: torch.Tensor, n_classes: int = 10, p: float = 3.0,
                 power: float = 4.5, input_norm: float | None = 2.0) -> None:
        super().__init__()
        self.p = _check_p(p)
        weights = _check_matrix("weights", weights).detach().to(torch.float32).clone()
        self.n_classes = _check_int("n_classes", n_classes, 2)
        self.power = _check_real("power", power, 1.0)
        self.input_norm = _check_input_norm(input_norm)
        self.register_buffer("weights", weights)  # [K, D] W
        self.register_buffer("metric", _current_matrix(weights, self.p).clone())  # [K, D] M
        self.register_buffer("gain", torch.ones(()))  # c, a constant scalar
        self.readout = nn.Linear(weights.shape[0], self.n_classes)

    @torch.no_grad()
    def set_weights(self, weights: torch.Tensor) -> None:
        """Replace W ``[K, D]`` (same shape) and its metric matrix M, e.g. after training."""
        weights = _check_matrix("weights", weights, width=self.weights.shape[1])
        if weights.shape != self.weights.shape:
            raise ValueError(f"weights must have shape {tuple(self.weights.shape)}, "
                             f"got {tuple(weights.shape)}")
        self.weights.copy_(weights)
        self.metric.copy_(_current_matrix(self.weights, self.p))

    def extra_repr(self) -> str:
        return (f"hidden={self.weights.shape[0]}, in_features={self.weights.shape[1]}, "
                f"p={self.p}, power={self.power}, input_norm={self.input_norm}")

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """Width K of the single hidden representation."""
        return (int(self.weights.shape[0]),)

    def input_currents(self, x: torch.Tensor) -> torch.Tensor:
        """I = v Mᵀ ``[B, K]`` (KH1) for inputs ``x [B, ...]`` with D features per sample."""
        v = normalize_inputs(x, self.input_norm)  # [B, D]
        if v.shape[1] != self.metric.shape[1]:
            raise ValueError(f"x has {v.shape[1]} features per sample, the network expects "
                             f"{self.metric.shape[1]}")
        return v @ self.metric.to(v.dtype).mT  # [B, K]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """h = relu(I)^n ``[B, K]`` (KH5) for inputs ``x [B, ...]``."""
        return torch.relu(self.input_currents(x)).pow(self.power)  # [B, K]

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, chunk: int = _CHUNK) -> float:
        """Set the readout gain c = 1 / sqrt(mean h²) over ``x [n, ...]``; return c.

        An all-zero h (no positive current anywhere) leaves c unchanged.
        """
        chunk = _check_int("chunk", chunk, 1)
        total, count = torch.zeros((), dtype=torch.float64), 0
        for start in range(0, len(x), chunk):
            h = self.hidden(x[start:start + chunk])  # [chunk, K]
            total += h.double().pow(2).sum()
            count += h.numel()
        if count and float(total) > 0:
            self.gain.fill_(float((total / count).rsqrt()))
        return float(self.gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]``."""
        return self.readout(self.hidden(x) * self.gain)

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden representation ``[h [B, K]]``."""
        h = self.hidden(x)
        return self.readout(h * self.gain), [h]


def train_readout(net: KrotovHopfieldNet, x_train: torch.Tensor, y_train: torch.Tensor,
                  epochs: int = 10, lr: float = 1e-2, batch_size: int = 100, seed: int = 0,
                  x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None
                  ) -> list[dict[str, float]]:
    """Train the linear readout of ``net`` with Adam on cross-entropy; return the history.

    First :meth:`KrotovHopfieldNet.calibrate` sets the readout gain on ``x_train``. The
    hidden layer is frozen, so c·h is computed once for all of ``x_train`` (no gradient)
    and the readout is trained on it, which is the same as training through the network;
    batch orders come from a generator seeded with ``seed`` (the readout's initial weights
    come from torch's global generator, as for every library model). Each history row
    has ``epoch``, mean ``loss``, ``train_accuracy`` (of the batches, during the epoch),
    ``test_accuracy`` after the epoch when ``x_test`` and ``y_test`` are given, and
    ``seconds``. Memory: h of all of ``x_train`` is held, n·K floats (480 MB for the
    60,000 MNIST training images and K = 2000).

    Parameters
    ----------
    net : KrotovHopfieldNet
        The network whose readout is trained in place.
    x_train, y_train : torch.Tensor
        Inputs ``[n, ...]`` and int64 labels ``[n]``.
    epochs, lr, batch_size, seed
        Epochs (>= 1), Adam learning rate (> 0), minibatch size (>= 1, capped at n), seed.
    x_test, y_test : torch.Tensor, optional
        Held-out inputs ``[m, ...]`` and labels ``[m]`` scored after every epoch.
    """
    if not isinstance(net, KrotovHopfieldNet):
        raise ValueError(f"net must be a KrotovHopfieldNet, got {type(net).__name__}")
    epochs = _check_int("epochs", epochs, 1)
    lr = _check_real("lr", lr, 0.0, strict=True)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    _check_inputs("x_train", x_train)
    if (not isinstance(y_train, torch.Tensor) or y_train.is_floating_point()
            or y_train.dtype == torch.bool or y_train.shape != (len(x_train),)):
        raise ValueError(f"y_train must be an integer tensor [n] = [{len(x_train)}], "
                         f"got {_describe(y_train)}")
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")
    if x_test is not None:
        _check_inputs("x_test", x_test)
        if (not isinstance(y_test, torch.Tensor) or y_test.is_floating_point()
                or y_test.shape != (len(x_test),)):
            raise ValueError(f"y_test must be an integer tensor [m] = [{len(x_test)}], "
                             f"got {_describe(y_test)}")
    net.calibrate(x_train, chunk=_CHUNK)
    h_all = _scaled_hidden(net, x_train)  # [n, K]
    h_test = _scaled_hidden(net, x_test) if x_test is not None else None  # [m, K]
    y_all = y_train.long()
    n = len(h_all)
    bs = min(batch_size, n)
    n_batches = n // bs
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.readout.parameters(), lr=lr)
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = 0.0, 0
        for b in range(n_batches):
            idx = order[b * bs:(b + 1) * bs]
            logits = net.readout(h_all[idx])  # [B, n_classes]
            loss = F.cross_entropy(logits, y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().item()
            correct += int((logits.detach().argmax(1) == y_all[idx]).sum())
        row = {"epoch": epoch + 1, "loss": loss_sum / n_batches,
               "train_accuracy": correct / (n_batches * bs)}
        if h_test is not None:
            with torch.no_grad():
                row["test_accuracy"] = float(
                    (net.readout(h_test).argmax(1) == y_test).double().mean())
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
    return history


@torch.no_grad()
def _scaled_hidden(net: KrotovHopfieldNet, x: torch.Tensor) -> torch.Tensor:
    """c·h ``[n, K]`` of all of ``x [n, ...]``, computed in chunks, in the readout's dtype."""
    h = torch.cat([net.hidden(x[i:i + _CHUNK]) for i in range(0, len(x), _CHUNK)])  # [n, K]
    return (h * net.gain).to(net.readout.weight.dtype)
