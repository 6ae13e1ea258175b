"""An AutoAttack-grade L∞ robustness audit: the library's FGSM and PGD-40 plus AutoAttack.

The book's robustness numbers come from FGSM and PGD-40 (:mod:`powerlaw_lib.attacks`). An
audit asks whether a stronger, parameter-free ensemble finds more adversarial examples. It
runs, at every ε of a grid, on the same images:

- ``"fgsm"`` -- the library's FGSM (Goodfellow et al. 2014);
- ``"pgd"`` -- the library's PGD-40, step 0.01, no random start (Madry et al. 2018; the
  papers' attack), evaluated exactly as :func:`powerlaw_lib.attacks.robust_accuracy` does:
  an image is broken as soon as an iterate is misclassified, and an image broken at a
  smaller ε of the grid stays broken;
- ``"apgd-ce"`` -- APGD on the cross-entropy (Croce & Hein 2020a), 1 restart;
- ``"apgd-t"`` -- targeted APGD on the targeted DLR loss, one run per target class among
  the ``n_targets`` most likely wrong classes (Croce & Hein 2020a);
- ``"fab-t"`` -- targeted FAB, the minimum-norm Fast Adaptive Boundary attack, counted
  only where the example it finds lies within ε (Croce & Hein 2020b);
- ``"square"`` -- Square Attack, a score-based black-box random search on the margin loss
  (Andriushchenko et al. 2020).

The last four are the ``standard`` AutoAttack ensemble (Croce & Hein 2020a), run through
``torchattacks`` 3.5.1 (Kim 2020) with AutoAttack's budgets by default: 100 iterations for
APGD-CE, APGD-T and FAB-T, 5,000 queries for Square (torchattacks' own AutoAttack class
uses 10 iterations).

Outcomes
--------
For every attack, a boolean array ``[E, N]``: True where image n is still classified
correctly at the attack's output for the ε of row e. An image misclassified clean is
never correct (the clean point lies in every ball, as in AutoAttack and the library's PGD).
The audit's robust accuracy is the mean over images of the AND over attacks: an image is
robust only if no attack of the ensemble broke it, so it is never above any single
attack's accuracy.

Checked examples
----------------
Every adversarial example an attack returns is checked before it is judged: inside the
L∞ ball (``|x_adv - x|_∞ <= eps + 1e-6``), inside ``[0, 1]`` and finite. An example that
fails the check has its non-finite entries reset to the clean value and is projected onto
the ball intersected with ``[0, 1]``; the projected example is the attack's output, it is
judged as such, and :attr:`AuditResult.projected` counts those images per attack and ε.
(The library's PGD is judged on its iterates, projected at every step; its returned
examples are checked all the same.)

Conventions
-----------
As in :mod:`powerlaw_lib.attacks`: ``x`` is ``[N, C, H, W]`` in ``[0, 1]`` (Square and APGD
need image-shaped inputs), ``y`` integer labels ``[N]``, the model returns logits ``[B, C]``
(or a tuple whose first element they are). The model must be in evaluation mode and must
not couple the images of a batch: a whitened model must have its whitening frozen
(``training.freeze_whitening``). Attacks never touch the parameters' ``.grad``:
torchattacks sees the model through a view whose parameters are detached. torchattacks
reseeds torch's global generator; the wrappers restore its state afterwards. Random
starts are drawn per batch of ``batch_size`` images, so outcomes depend on the seed and
the batching.

References
----------
Andriushchenko, Croce, Flammarion & Hein 2020, "Square attack: a query-efficient black-box
adversarial attack via random search", ECCV.
Croce & Hein 2020a, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML (AutoAttack, APGD).
Croce & Hein 2020b, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML (FAB).
Goodfellow, Shlens & Szegedy 2014, "Explaining and harnessing adversarial examples".
Kim 2020, "Torchattacks: a PyTorch repository for adversarial attacks", arXiv:2010.01950.
Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchattacks
from torch import nn

from .attacks import (
    _as_input,
    _as_labels,
    _check_eps_grid,
    _check_nonnegative,
    _logits,
    _pgd_until_found,
    _predict,
    _project,
    fgsm,
)
from .models import Whitening
from .validation import check_int

__all__ = [
    "ATTACKS",
    "AuditResult",
    "BLACK_BOX",
    "ITERATIVE",
    "WHITE_BOX",
    "apgd_ce",
    "apgd_t",
    "audit_accuracy",
    "check_examples",
    "fab_t",
    "square",
]

#: Every attack of the audit, in the order they run.
ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "square")
#: Attacks that use the model's gradients.
WHITE_BOX: tuple[str, ...] = ("fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t")
#: Iterative gradient attacks, expected to be at least as strong as one-step FGSM.
ITERATIVE: tuple[str, ...] = ("pgd", "apgd-ce", "apgd-t")
#: Attacks that use only the model's scores.
BLACK_BOX: tuple[str, ...] = ("square",)
#: Slack of the ε-ball check: float32 rounding of x ± ε.
BALL_TOLERANCE = 1e-6
#: The library's PGD as the papers run it (Nassar et al. 2020, §4).
PGD_STEPS, PGD_STEP_SIZE = 40, 0.01


# ----------------------------------------------------------------------------- validation


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _check_model(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("model must be in evaluation mode: call model.eval() before the audit")
    if any(isinstance(m, Whitening) and not bool(m.is_frozen) for m in model.modules()):
        raise ValueError(
            "model couples the images of a batch (unfrozen Whitening): freeze it first "
            "(training.freeze_whitening)"
        )
    return model


def _check_images(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
    return x


def _check_attacks(attacks: object) -> tuple[str, ...]:
    try:
        names = () if isinstance(attacks, str) else tuple(attacks)  # type: ignore[arg-type]
    except TypeError:
        names = ()
    if not names or any(name not in ATTACKS for name in names) or len(set(names)) != len(names):
        raise ValueError(
            f"attacks must be a non-empty sequence of distinct names from {ATTACKS}, "
            f"got {attacks!r}"
        )
    return tuple(name for name in ATTACKS if name in names)  # the audit's order


def _n_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        return int(_logits(model, x[:1]).shape[1])


def _check_n_targets(n_targets: int | None, n_classes: int) -> int:
    if n_targets is None:
        return n_classes - 1
    if (
        isinstance(n_targets, bool)
        or not isinstance(n_targets, (int, np.integer))
        or not 1 <= n_targets < n_classes
    ):
        raise ValueError(
            f"n_targets must be None or an integer in [1, {n_classes - 1}], got {n_targets!r}"
        )
    return int(n_targets)


def _prepare(
    model: nn.Module, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, eps: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    eps = _check_nonnegative("eps", eps)
    _check_model(model)
    x = _check_images(_as_input(x, model))
    return x, _as_labels(y, x), eps


# ----------------------------------------------------------------------------- checked examples


def check_examples(
    x_adv: torch.Tensor, x: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check adversarial examples against the threat model; project those that fail.

    Parameters
    ----------
    x_adv, x : torch.Tensor, shape [B, ...]
        Examples an attack returned and the clean inputs.
    eps : float
        Radius of the L∞ ball, >= 0.

    Returns
    -------
    x_adv : torch.Tensor, shape [B, ...]
        The examples, with those outside the ball, outside ``[0, 1]`` or non-finite made
        finite (non-finite entries take the clean value) and projected onto the ball
        intersected with ``[0, 1]``.
    outside : torch.Tensor of bool, shape [B]
        True where the example failed the check and was projected.
    """
    eps = _check_nonnegative("eps", eps)
    if x_adv.shape != x.shape:
        raise ValueError(
            f"x_adv must have the shape of x {tuple(x.shape)}, got {tuple(x_adv.shape)}"
        )
    x_adv = x_adv.detach().to(dtype=x.dtype, device=x.device)
    flat, clean = x_adv.flatten(1), x.flatten(1)  # [B, D]
    finite = torch.isfinite(flat).all(dim=1)  # [B]
    flat = torch.where(torch.isfinite(flat), flat, clean)
    distance = (flat - clean).abs().amax(dim=1)  # [B]
    in_range = (flat >= 0).all(dim=1) & (flat <= 1).all(dim=1)  # [B]
    outside = ~finite | ~in_range | (distance > eps + BALL_TOLERANCE)  # [B]
    x_adv = flat.reshape(x.shape)  # a new tensor (torch.where)
    if bool(outside.any()):
        x_adv[outside] = _project(x_adv[outside], x[outside], eps)
    return x_adv, outside


# ----------------------------------------------------------------------------- torchattacks


class _DetachedLogits(nn.Module):
    """The model as torchattacks sees it: logits ``[B, C]`` with its parameters detached.

    Input gradients flow as usual; nothing accumulates in the parameters' ``.grad`` (FAB
    calls ``backward``). Inputs are cast to the model's dtype, logits back to the input's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        # torchattacks puts the model in eval mode and afterwards back in train mode when
        # it found it training: this view reports eval mode and so leaves the model's mode
        # as it was (eval, checked by the callers); its children's flags are not touched.
        self.training = False
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {name: p.detach() for name, p in self.model.named_parameters()}
        dtype = next(iter(params.values())).dtype if params else x.dtype

        def call(inputs: torch.Tensor):
            return torch.func.functional_call(self.model, params, (inputs.to(dtype),))

        return _logits(call, x).to(x.dtype)  # checks the [B, C] shape, takes tuple[0]


def _build(
    name: str, model: nn.Module, eps: float, steps: int, n_queries: int, n_targets: int, seed: int
) -> torchattacks.attack.Attack:
    """One torchattacks attack, L∞, one restart, AutoAttack's standard configuration."""
    if name == "apgd-ce":
        return torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                 seed=seed, loss="ce")
    if name == "apgd-t":
        return torchattacks.APGDT(model, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                  seed=seed, n_classes=n_targets + 1)
    if name == "fab-t":
        return torchattacks.FAB(model, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                                seed=seed, multi_targeted=True, n_classes=n_targets + 1)
    return torchattacks.Square(model, norm="Linf", eps=eps, n_queries=n_queries, n_restarts=1,
                               seed=seed, loss="margin")


def _torchattack(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 100,
    n_queries: int = 5000,
    n_targets: int = 9,
    seed: int = 0,
) -> torch.Tensor:
    """Raw (unchecked) output ``[B, C, H, W]`` of one torchattacks attack on validated inputs."""
    if eps == 0:
        return x.clone()
    attack = _build(name, _DetachedLogits(model), eps, steps, n_queries, n_targets, seed)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad(), torch.autocast(
        device_type=x.device.type, enabled=False
    ):
        return attack(x, y).detach()


def _wrapped(
    name: str,
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    eps: float,
    **options,
) -> torch.Tensor:
    """Validate, run one torchattacks attack and check its examples."""
    x, y, eps = _prepare(model, x, y, eps)
    options["seed"] = _check_seed(options["seed"])
    for key in ("steps", "n_queries"):
        if key in options:
            options[key] = check_int(key, options[key])
    n_classes = _n_classes(model, x)
    if name == "apgd-t" and n_classes < 4:
        raise ValueError(f"model must return at least 4 logits for apgd-t (targeted DLR loss), "
                         f"got {n_classes}")
    if "n_targets" in options:
        options["n_targets"] = _check_n_targets(options["n_targets"], n_classes)
    return check_examples(_torchattack(name, model, x, y, eps, **options), x, eps)[0]


def apgd_ce(model: nn.Module, x, y, eps: float, steps: int = 100, seed: int = 0) -> torch.Tensor:
    """APGD on the cross-entropy, L∞, one restart (Croce & Hein 2020a), via torchattacks.

    Auto-PGD: PGD with momentum whose step size starts at 2ε and halves when the loss stops
    improving; starts at a random point of the ball; returns the last misclassified
    iterate where one was found, else ``x``.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``; in evaluation mode, without batch coupling.
    x : tensor or array, shape [B, C, H, W]
        Clean inputs in ``[0, 1]``.
    y : tensor or array of int, shape [B]
        True labels.
    eps : float
        Radius of the L∞ ball, >= 0. ``eps = 0`` returns ``x`` unchanged.
    steps : int
        Iterations, >= 1 (AutoAttack: 100).
    seed : int
        Seed of the random start, >= 0.

    Returns
    -------
    torch.Tensor, shape [B, C, H, W]
        Checked adversarial inputs (see the module docstring), in ``[0, 1]`` with
        ``|x_adv - x|_∞ <= eps``.
    """
    return _wrapped("apgd-ce", model, x, y, eps, steps=steps, seed=seed)


def apgd_t(
    model: nn.Module, x, y, eps: float, steps: int = 100, n_targets: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Targeted APGD on the targeted DLR loss, L∞ (Croce & Hein 2020a), via torchattacks.

    One APGD run per target class: the 2nd, 3rd, ... most likely classes at ``x``, up to
    ``n_targets`` of them, each on the images not yet broken. Needs >= 4 classes.

    Parameters
    ----------
    model, x, y, eps, steps, seed
        As in :func:`apgd_ce`.
    n_targets : int or None
        Number of target classes, in ``[1, C - 1]``; None: all ``C - 1`` (AutoAttack: 9).

    Returns
    -------
    torch.Tensor, shape [B, C, H, W]
        Checked adversarial inputs, in ``[0, 1]`` with ``|x_adv - x|_∞ <= eps``.
    """
    return _wrapped("apgd-t", model, x, y, eps, steps=steps, n_targets=n_targets, seed=seed)


def fab_t(
    model: nn.Module, x, y, eps: float, steps: int = 100, n_targets: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Targeted FAB, L∞ (Croce & Hein 2020b), via torchattacks.

    The Fast Adaptive Boundary attack searches the smallest perturbation that reaches the
    decision boundary towards each target class (the 2nd, 3rd, ... most likely, up to
    ``n_targets``) by projections on linearized boundaries; an example counts (is
    returned) only if it is misclassified and lies within ``eps``, else ``x`` is returned.

    Parameters
    ----------
    model, x, y, eps, steps, seed
        As in :func:`apgd_ce`.
    n_targets : int or None
        Number of target classes, in ``[1, C - 1]``; None: all ``C - 1`` (AutoAttack: 9).

    Returns
    -------
    torch.Tensor, shape [B, C, H, W]
        Checked adversarial inputs, in ``[0, 1]`` with ``|x_adv - x|_∞ <= eps``.
    """
    return _wrapped("fab-t", model, x, y, eps, steps=steps, n_targets=n_targets, seed=seed)


def square(
    model: nn.Module, x, y, eps: float, n_queries: int = 5000, seed: int = 0
) -> torch.Tensor:
    """Square Attack, L∞, margin loss (Andriushchenko et al. 2020), via torchattacks.

    Score-based black-box random search: it never uses gradients, only the logits. Each
    query shifts a random square patch by ±2ε per channel (then projects onto the ball)
    and keeps the change when the margin between the true logit and the largest other
    logit decreases.

    Parameters
    ----------
    model, x, y, eps, seed
        As in :func:`apgd_ce`.
    n_queries : int
        Queries per image, >= 1 (AutoAttack: 5,000).

    Returns
    -------
    torch.Tensor, shape [B, C, H, W]
        Checked adversarial inputs, in ``[0, 1]`` with ``|x_adv - x|_∞ <= eps``.
    """
    return _wrapped("square", model, x, y, eps, n_queries=n_queries, seed=seed)


# ----------------------------------------------------------------------------- the audit


@dataclass(frozen=True)
class AuditResult:
    """Per-image outcomes of every attack of an audit, and the worst case over them.

    Attributes
    ----------
    eps : np.ndarray of float64, shape [E]
        The ε grid, in the order given.
    attacks : tuple of str
        The attacks run, in the audit's order (a subset of :data:`ATTACKS`).
    correct : dict of str to np.ndarray of bool, shape [E, N]
        Per attack: True where the image is still classified correctly (and was clean).
    robust : np.ndarray of bool, shape [E, N]
        The AND of ``correct`` over the attacks: True where no attack broke the image.
    accuracy : dict of str to np.ndarray of float64, shape [E]
        Per attack: its own accuracy, the mean of ``correct[name]`` over images.
    robust_accuracy : np.ndarray of float64, shape [E]
        The audit's robust accuracy: the mean of ``robust`` over images.
    clean : np.ndarray of bool, shape [N]
        True where the clean image is classified correctly.
    projected : dict of str to np.ndarray of int64, shape [E]
        Per attack: images whose example failed the threat-model check and was projected.
    n : int
        Number of images.
    steps, n_queries, n_targets, seed, batch_size : int
        The settings of the run (``steps`` for APGD-CE, APGD-T and FAB-T).
    """

    eps: np.ndarray
    attacks: tuple[str, ...]
    correct: dict[str, np.ndarray]
    robust: np.ndarray
    accuracy: dict[str, np.ndarray]
    robust_accuracy: np.ndarray
    clean: np.ndarray
    projected: dict[str, np.ndarray]
    n: int
    steps: int
    n_queries: int
    n_targets: int
    seed: int
    batch_size: int


def _attack_outcomes(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    clean: torch.Tensor,
    batch_size: int,
    options: dict,
) -> tuple[torch.Tensor, int]:
    """FGSM or a torchattacks attack at one ε on the clean-correct images.

    Returns the outcomes ``[N]`` (bool) and the number of examples that were projected.
    """
    correct = clean.clone()  # [N]
    projected = 0
    if eps == 0:
        return correct, projected
    for chunk in torch.nonzero(clean).flatten().split(batch_size):
        if chunk.numel() == 0:  # no clean-correct image (an empty index splits into one chunk)
            continue
        xb, yb = x[chunk], y[chunk]
        if name == "fgsm":
            raw = fgsm(model, xb, yb, eps)
        else:
            raw = _torchattack(name, model, xb, yb, eps, **options)
        x_adv, outside = check_examples(raw, xb, eps)
        projected += int(outside.sum())
        correct[chunk] = _predict(model, x_adv, batch_size) == yb
    return correct, projected


def _pgd_outcomes(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    grid: np.ndarray,
    clean: torch.Tensor,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The library's PGD-40 over the grid as ``robust_accuracy(..., "pgd", grid)`` runs it.

    ε increasing; only images that survived every smaller ε are attacked; an image is
    broken when an iterate is misclassified. Returned examples are checked; one that had
    to be projected is judged at its projection. Returns ([E, N] bool, [E] projected).
    """
    unique, inverse = np.unique(grid, return_inverse=True)  # increasing
    alive = clean.clone()  # [N]
    correct = np.empty((unique.size, len(x)), dtype=bool)
    projected = np.zeros(unique.size, dtype=np.int64)
    for k, eps in enumerate(unique):
        if eps > 0:
            for chunk in torch.nonzero(alive).flatten().split(batch_size):
                if chunk.numel() == 0:
                    continue
                found, x_out = _pgd_until_found(
                    model, x[chunk], y[chunk], float(eps), PGD_STEPS, PGD_STEP_SIZE, False, None
                )
                x_out, outside = check_examples(x_out, x[chunk], float(eps))
                if bool(outside.any()):
                    rows = torch.nonzero(outside).flatten()
                    found[rows] = _predict(model, x_out[rows], batch_size) != y[chunk][rows]
                    projected[k] += int(outside.sum())
                alive[chunk[found]] = False
        correct[k] = alive.cpu().numpy()
    inverse = inverse.reshape(-1)
    return correct[inverse], projected[inverse]


def audit_accuracy(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    eps_grid: object,
    attacks: tuple[str, ...] = ATTACKS,
    batch_size: int = 1000,
    seed: int = 0,
    steps: int = 100,
    n_queries: int = 5000,
    n_targets: int | None = None,
) -> AuditResult:
    """Robust accuracy under an ensemble of attacks: FGSM, PGD-40 and AutoAttack, L∞.

    Every attack runs at every ε of the grid on the clean-correct images (see the module
    docstring for the members, their outcomes and the checks of their examples). The
    audit's robust accuracy is the mean over images of the AND of the per-attack outcomes,
    never above any member's accuracy, FGSM's and the papers' PGD-40 included.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``; in evaluation mode, without batch coupling (frozen
        whitening).
    x : tensor or array, shape [N, C, H, W]
        Clean inputs in ``[0, 1]``.
    y : tensor or array of int, shape [N]
        True labels.
    eps_grid : sequence of float, shape [E]
        Radii of the L∞ ball, each >= 0, in any order.
    attacks : sequence of str
        Members, distinct names from :data:`ATTACKS` (default: all of them).
    batch_size : int
        Images per attack call and per model evaluation, >= 1.
    seed : int
        Seed of APGD's random starts, FAB's and Square's randomness, >= 0.
    steps : int
        Iterations of APGD-CE, APGD-T and FAB-T, >= 1 (AutoAttack: 100).
    n_queries : int
        Queries of Square per image, >= 1 (AutoAttack: 5,000).
    n_targets : int or None
        Target classes of APGD-T and FAB-T, in ``[1, C - 1]``; None: ``C - 1``.

    Returns
    -------
    AuditResult
        Per-attack outcomes ``[E, N]`` and accuracies ``[E]``, the worst case over the
        attacks, the clean outcomes and the count of projected examples.
    """
    names = _check_attacks(attacks)
    grid = _check_eps_grid(eps_grid)
    batch_size = check_int("batch_size", batch_size)
    seed = _check_seed(seed)
    steps = check_int("steps", steps)
    n_queries = check_int("n_queries", n_queries)
    _check_model(model)
    x = _check_images(_as_input(x, model))
    y = _as_labels(y, x)
    n_classes = _n_classes(model, x)
    n_targets = _check_n_targets(n_targets, n_classes)
    if "apgd-t" in names and n_classes < 4:
        raise ValueError(f"model must return at least 4 logits for apgd-t (targeted DLR loss), "
                         f"got {n_classes}; leave 'apgd-t' out of attacks")
    options = {"steps": steps, "n_queries": n_queries, "n_targets": n_targets, "seed": seed}
    clean = _predict(model, x, batch_size) == y  # [N]

    correct, projected = {}, {}
    for name in names:
        if name == "pgd":
            correct[name], projected[name] = _pgd_outcomes(model, x, y, grid, clean, batch_size)
            continue
        rows, counts = [], []
        for eps in grid:
            row, count = _attack_outcomes(name, model, x, y, float(eps), clean, batch_size, options)
            rows.append(row.cpu().numpy())
            counts.append(count)
        correct[name] = np.stack(rows)  # [E, N]
        projected[name] = np.asarray(counts, dtype=np.int64)  # [E]
    robust = np.logical_and.reduce([correct[name] for name in names])  # [E, N]
    return AuditResult(
        eps=grid,
        attacks=names,
        correct=correct,
        robust=robust,
        accuracy={name: correct[name].mean(axis=1) for name in names},
        robust_accuracy=robust.mean(axis=1),
        clean=clean.cpu().numpy(),
        projected=projected,
        n=int(len(x)),
        steps=steps,
        n_queries=n_queries,
        n_targets=n_targets,
        seed=seed,
        batch_size=batch_size,
    )
