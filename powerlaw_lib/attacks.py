"""L-infinity adversarial attacks, white-noise corruption and robust-accuracy curves.

Threat model
------------
Every attack here perturbs an input ``x`` inside the L-infinity ball of radius ``eps``
around it, intersected with the valid image range ``[0, 1]`` (Nassar et al. 2020, §4 and
eqs. 6-8; inputs are not normalised). A ``model`` is any ``torch.nn.Module`` whose
``forward(x)`` returns logits of shape ``[B, C]``; a model whose forward returns a tuple
``(logits, ...)`` is also accepted and its first element is used.

Conventions
-----------
- Input gradients are computed with :func:`torch.autograd.grad` only: parameters' ``.grad``
  and ``requires_grad`` are never touched, and no graph is kept between steps.
- The attacks run the model in whatever mode (train/eval) it is in and never change it;
  callers put the model in eval mode (batch norm and dropout otherwise act per batch).
- Computation is in float32 (float64 when the model's parameters are float64), with any
  enclosing autocast disabled.
- ``x`` is a tensor or array of shape ``[B, ...]`` with values in ``[0, 1]``; ``y`` holds
  integer class labels ``[B]``. Attacks return a tensor on the model's device.

References
----------
Goodfellow, Shlens & Szegedy 2014, "Explaining and harnessing adversarial examples" (FGSM).
Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks" (PGD).
Nassar et al. 2020, "On 1/n neural representation and adversarial robustness", eqs. 6-8 and
the appendix (white-noise corruption).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_int, check_nonnegative as _check_nonnegative

__all__ = [
    "RobustCurve",
    "fgsm",
    "gaussian_noise",
    "pgd",
    "pgd_restarts",
    "robust_accuracy",
    "robust_accuracy_curve",
    "robust_accuracy_naive",
]

AttackFn = Callable[..., torch.Tensor]
_NAMED_ATTACKS = ("fgsm", "pgd", "noise")


# ----------------------------------------------------------------------------- validation


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps}")
    return int(steps)


def _check_step_size(step_size: float) -> float:
    step_size = float(step_size)
    if not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a finite number > 0, got {step_size}")
    return step_size


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """float64 if the model's parameters are float64, else float32; the parameters' device."""
    for p in model.parameters():
        if p.is_floating_point():
            dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
            return dtype, p.device
    return torch.float32, torch.device("cpu")


def _as_input(x: torch.Tensor | np.ndarray, model: nn.Module | None) -> torch.Tensor:
    """Convert ``x`` to a floating tensor on the model's device and check it lies in [0, 1]."""
    if model is None:
        dtype, device = torch.float32, None
        if isinstance(x, torch.Tensor):
            device = x.device
            if x.dtype == torch.float64:
                dtype = torch.float64
    else:
        dtype, device = _model_dtype_device(model)
    x = torch.as_tensor(x).detach().to(device=device, dtype=dtype)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must have shape [B, ...] with B >= 1, got {tuple(x.shape)}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            f"x must lie in [0, 1], got values in [{x.min().item():.4g}, {x.max().item():.4g}]"
        )
    return x


def _as_labels(y: torch.Tensor | np.ndarray, x: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(y).detach().to(device=x.device)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape [B] = [{x.shape[0]}], got {tuple(y.shape)}")
    return y.long()


def _check_eps_grid(eps_grid: object, name: str = "eps_grid") -> np.ndarray:
    grid = np.asarray(eps_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {grid.shape}")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"{name} must hold finite values >= 0, got {grid.tolist()}")
    return grid


# ----------------------------------------------------------------------------- primitives


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model logits ``[B, C]``; the first element is taken if forward returns a tuple."""
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model must return logits of shape [B, C] = [{x.shape[0]}, C], got {shape}"
        )
    return out


def _logits_and_input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at ``x`` and ∇_x of the summed cross-entropy (per-sample gradients).

    The sum (not the mean) keeps each sample's gradient independent of the batch size.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        logits = _logits(model, x)  # [B, C]
        loss = F.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)  # [B, ...]
    return logits.detach(), grad


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted classes ``[B]``, evaluated in chunks of ``batch_size``."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
        return torch.cat([_logits(model, chunk).argmax(dim=1) for chunk in chunks])


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the L∞ ball of radius eps around x intersected with [0, 1]."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def _uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform random point in the ε-ball around x, clipped to [0, 1] (Madry et al. 2018)."""
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # [B, ...]
    return (x + (2.0 * noise - 1.0) * eps).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- attacks


def fgsm(
    model: nn.Module, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, eps: float
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2014; Nassar et al. 2020, eq. 6).

    ``x_adv = clip_[0,1](x + eps · sign(∇_x CE(model(x), y)))``. Threat model: L∞ ball of
    radius ``eps``, inputs in ``[0, 1]``. Put the model in eval mode before calling.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``; its mode, parameters and their ``.grad`` are left untouched.
    x : tensor or array, shape [B, ...]
        Clean inputs in ``[0, 1]``.
    y : tensor or array of int, shape [B]
        True labels.
    eps : float
        Radius of the L∞ ball, >= 0. ``eps = 0`` returns ``x`` unchanged.

    Returns
    -------
    torch.Tensor, shape [B, ...]
        Adversarial inputs in ``[0, 1]`` with ``|x_adv - x|_∞ <= eps``.
    """
    eps = _check_nonnegative("eps", eps)
    x = _as_input(x, model)
    y = _as_labels(y, x)
    if eps == 0:
        return x.clone()
    _, grad = _logits_and_input_gradient(model, x, y)
    return (x + eps * grad.sign()).clamp_(0.0, 1.0)


def pgd(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    eps: float,
    steps: int = 40,
    step_size: float = 0.01,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent, L∞ (Madry et al. 2018; Nassar et al. 2020, eqs. 7-8).

    ``x_{t+1} = Π(x_t + step_size · sign(∇_x CE(model(x_t), y)))`` with Π the projection onto
    the L∞ ball of radius ``eps`` around ``x`` intersected with ``[0, 1]``, applied after
    every step. Each step moves along the *sign* of the gradient, the standard L∞ PGD of
    Madry et al. and of the attack libraries; Nassar et al.'s eq. 8 as printed omits the
    sign. Paper setting: 40 steps, step size 0.01, no random start. Put the model in eval
    mode before calling.

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``; its mode, parameters and their ``.grad`` are left untouched.
    x : tensor or array, shape [B, ...]
        Clean inputs in ``[0, 1]``.
    y : tensor or array of int, shape [B]
        True labels.
    eps : float
        Radius of the L∞ ball, >= 0. ``eps = 0`` returns ``x`` unchanged.
    steps : int
        Number of gradient steps, >= 0.
    step_size : float
        Step length η per coordinate, > 0.
    random_start : bool
        Start from a uniform random point of the ball instead of ``x``.
    generator : torch.Generator, optional
        Source of the random start, for reproducibility.

    Returns
    -------
    torch.Tensor, shape [B, ...]
        The last iterate, in ``[0, 1]`` with ``|x_adv - x|_∞ <= eps``.
    """
    eps = _check_nonnegative("eps", eps)
    steps = _check_steps(steps)
    step_size = _check_step_size(step_size)
    x = _as_input(x, model)
    y = _as_labels(y, x)
    if eps == 0:
        return x.clone()
    x_adv = _uniform_start(x, eps, generator) if random_start else x.clone()  # [B, ...]
    for _ in range(steps):
        _, grad = _logits_and_input_gradient(model, x_adv, y)
        x_adv = _project(x_adv + step_size * grad.sign(), x, eps)
    return x_adv


def gaussian_noise(
    x: torch.Tensor | np.ndarray, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """White-noise corruption ``clip_[0,1](x + σ · N(0, 1))`` (Nassar et al. 2020, appendix).

    Parameters
    ----------
    x : tensor or array, shape [B, ...]
        Clean inputs in ``[0, 1]``.
    sigma : float
        Noise standard deviation, >= 0. ``sigma = 0`` returns ``x`` unchanged.
    generator : torch.Generator, optional
        Source of the noise, for reproducibility.

    Returns
    -------
    torch.Tensor, shape [B, ...]
        Noisy inputs in ``[0, 1]``.
    """
    sigma = _check_nonnegative("sigma", sigma)
    x = _as_input(x, None)
    if sigma == 0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # [B, ...]
    return (x + sigma * noise).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- early-stopping PGD


def _pgd_until_found(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L∞ PGD that stops optimizing each image as soon as an iterate is misclassified.

    Every iterate (start point included) is checked with the logits of the forward pass
    that also gives its gradient; images found adversarial leave the active batch.

    Returns
    -------
    found : torch.Tensor of bool, shape [B]
        True where some iterate was misclassified.
    x_adv : torch.Tensor, shape [B, ...]
        The misclassified iterate where found, else the last iterate.
    """
    n = x.shape[0]
    found = torch.zeros(n, dtype=torch.bool, device=x.device)  # [B]
    if n == 0:  # every image already broken (torch.split of an empty index gives one empty chunk)
        return found, x.clone()
    x_out = _uniform_start(x, eps, generator) if random_start else x.clone()  # [B, ...]
    active = torch.arange(n, device=x.device)  # [A] indices of images still attacked
    xa, x0, ya = x_out.clone(), x, y  # [A, ...], [A, ...], [A]
    for _ in range(steps):
        logits, grad = _logits_and_input_gradient(model, xa, ya)
        wrong = logits.argmax(dim=1) != ya  # [A]
        if bool(wrong.any()):  # the one synchronisation per step, needed to shrink
            hit = active[wrong]
            found[hit] = True
            x_out[hit] = xa[wrong]
            keep = ~wrong
            active, xa, x0, ya, grad = active[keep], xa[keep], x0[keep], ya[keep], grad[keep]
            if active.numel() == 0:
                return found, x_out
        xa = _project(xa + step_size * grad.sign(), x0, eps)
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        wrong = _logits(model, xa).argmax(dim=1) != ya  # [A] final iterate
    found[active[wrong]] = True
    x_out[active] = xa
    return found, x_out


def pgd_restarts(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    eps: float,
    restarts: int,
    steps: int = 40,
    step_size: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> np.ndarray:
    """Per-image robustness under PGD with restarts (Madry et al. 2018), an attack-strength check.

    The first restart starts at ``x`` (the paper's attack), the others at uniform random
    points of the ball. Only images that survived so far are attacked again. An image is
    broken as soon as any iterate of any restart is misclassified (a clean error counts).

    Parameters
    ----------
    model, x, y, eps, steps, step_size, generator
        As in :func:`pgd`.
    restarts : int
        Number of PGD runs, >= 1.
    batch_size : int
        Images per model evaluation, >= 1.

    Returns
    -------
    np.ndarray of bool, shape [B]
        True where the image survived every restart.
    """
    eps = _check_nonnegative("eps", eps)
    restarts = check_int("restarts", restarts)
    steps = _check_steps(steps)
    step_size = _check_step_size(step_size)
    batch_size = check_int("batch_size", batch_size)
    x = _as_input(x, model)
    y = _as_labels(y, x)
    robust = _predict(model, x, batch_size) == y  # [B]
    if eps == 0:
        return robust.cpu().numpy()
    for r in range(restarts):
        idx = torch.nonzero(robust).flatten()  # [A]
        for chunk in idx.split(batch_size):
            found, _ = _pgd_until_found(
                model, x[chunk], y[chunk], eps, steps, step_size, r > 0, generator
            )
            robust[chunk[found]] = False
    return robust.cpu().numpy()


# ----------------------------------------------------------------------------- robust accuracy


@dataclass(frozen=True)
class RobustCurve:
    """Accuracy under attack as a function of the attack strength.

    Attributes
    ----------
    eps : np.ndarray of float64, shape [E]
        Attack strengths (ε, or σ for white noise), in the order given.
    accuracy : np.ndarray of float64, shape [E]
        Fraction of images classified correctly under the attack, in ``[0, 1]``.
    n : int
        Number of images evaluated.
    """

    eps: np.ndarray
    accuracy: np.ndarray
    n: int


def _resolve_attack(attack: str | AttackFn) -> str | AttackFn:
    valid = attack in _NAMED_ATTACKS if isinstance(attack, str) else callable(attack)
    if not valid:
        raise ValueError(f"attack must be one of {_NAMED_ATTACKS} or a callable, got {attack!r}")
    return attack


def _perturb(
    attack: str | AttackFn,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    generator: torch.Generator | None,
    attack_kwargs: dict,
) -> torch.Tensor:
    if attack == "fgsm":
        return fgsm(model, x, y, eps, **attack_kwargs)
    if attack == "pgd":
        return pgd(model, x, y, eps, generator=generator, **attack_kwargs)
    if attack == "noise":
        return gaussian_noise(x, eps, generator=generator, **attack_kwargs)
    return attack(model, x, y, eps, **attack_kwargs)


def _accuracy_per_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | AttackFn,
    grid: np.ndarray,
    batch_size: int,
    generator: torch.Generator | None,
    attack_kwargs: dict,
) -> np.ndarray:
    """Every ε independently, all images, accuracy judged at the attack's output."""
    accuracy = np.empty(grid.size, dtype=np.float64)
    for k, eps in enumerate(grid):
        correct = 0
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = _perturb(attack, model, xb, yb, float(eps), generator, attack_kwargs)
            correct += int((_predict(model, x_adv, batch_size) == yb).sum())
        accuracy[k] = correct / len(x)
    return accuracy


def _fgsm_accuracy_fast(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, grid: np.ndarray, batch_size: int
) -> np.ndarray:
    """FGSM accuracy over an ε grid with one input gradient per image.

    The gradient FGSM follows is taken at ``x`` and does not depend on ε, so each chunk's
    gradient sign is computed once and every ε costs one forward pass. The chunks, the
    gradients and the adversarial inputs are those of :func:`fgsm` called per ε, so the
    accuracies equal :func:`robust_accuracy_naive`'s exactly.
    """
    correct = np.zeros(grid.size, dtype=np.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]  # [b, ...], [b]
        direction = _logits_and_input_gradient(model, xb, yb)[1].sign() if (grid > 0).any() \
            else None  # [b, ...]
        for k, eps in enumerate(grid):
            x_adv = (xb + float(eps) * direction).clamp_(0.0, 1.0) if eps > 0 else xb
            correct[k] += int((_predict(model, x_adv, batch_size) == yb).sum())
    return correct / len(x)


class _SharedPrefix:
    """Per image, the stretch of the PGD trajectory that no ε-ball has clipped yet.

    Without a random start, PGD at every ε follows the same iterates ``x_1, x_2, ...`` (each
    clipped to ``[0, 1]`` only) until a step would leave the ε-ball: before that the
    projection is the identity. So with ε increasing, the iterates that PGD at one ε left
    inside its ball are the first iterates of PGD at every larger ε, and each ε continues
    from where the previous one was clipped instead of from ``x``. The result is exactly
    that of PGD started from ``x`` at each ε.

    ``point[i]`` is the last iterate known to lie inside the ball of the ε that produced it,
    after ``steps[i]`` steps; where ``has_next[i]``, ``next[i]`` is the iterate after it
    (the step that left that ball, clipped to ``[0, 1]`` only), which a larger ball may hold.
    """

    def __init__(self, x: torch.Tensor) -> None:
        n = x.shape[0]
        self.point = x.clone()  # [N, ...]
        self.steps = torch.zeros(n, dtype=torch.long, device=x.device)  # [N]
        self.next = x.clone()  # [N, ...]
        self.has_next = torch.zeros(n, dtype=torch.bool, device=x.device)  # [N]

    def start(self, idx: torch.Tensor, x0: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting iterates ``[A, ...]`` and their step counts ``[A]`` for PGD at ``eps``."""
        ahead = self.has_next[idx] & _inside(self.next[idx], x0, eps)  # [A]
        moved = idx[ahead]
        self.point[moved] = self.next[moved]
        self.steps[moved] += 1
        self.has_next[moved] = False
        return self.point[idx].clone(), self.steps[idx].clone()


def _inside(x_adv: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """True ``[B]`` where every coordinate of ``x_adv`` lies in ``[x0 - eps, x0 + eps]``,
    with the bounds rounded exactly as :func:`_project` rounds them."""
    within = (x_adv >= x0 - eps) & (x_adv <= x0 + eps)  # [B, ...]
    return within.flatten(1).all(dim=1)


def _pgd_until_found_shared(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    prefix: _SharedPrefix,
) -> torch.Tensor:
    """:func:`_pgd_until_found` (no random start) for the images ``idx``, continuing each
    from its shared prefix (:class:`_SharedPrefix`, updated in place).

    Returns ``found`` ``[A]``: True where some iterate was misclassified. The iterates of
    the prefix were checked at smaller ε (the images ``idx`` survived them); each is
    checked again here only where the run resumes from it.
    """
    x0, ya = x[idx], y[idx]  # [A, ...], [A]
    xa, done = prefix.start(idx, x0, eps)  # [A, ...], [A]
    left = steps - done  # [A] steps still to take
    on_prefix = torch.ones_like(left, dtype=torch.bool)  # [A] iterate is still unclipped
    found = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)  # [A]
    active = torch.arange(idx.numel(), device=x.device)  # [A'] positions still attacked
    while active.numel():
        last = left == 0  # [A'] no step left: only the final check
        if bool(last.all()):
            with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
                logits, grad = _logits(model, xa), None
        else:
            logits, grad = _logits_and_input_gradient(model, xa, ya)
        wrong = logits.argmax(dim=1) != ya  # [A']
        found[active[wrong]] = True
        keep = ~(wrong | last)
        if not bool(keep.all()):
            active, xa, x0, ya, left, on_prefix = (
                active[keep], xa[keep], x0[keep], ya[keep], left[keep], on_prefix[keep])
            if active.numel() == 0:
                break
            grad = grad[keep]
        raw = xa + step_size * grad.sign()  # [A', ...]
        xa = _project(raw, x0, eps)
        if bool(on_prefix.any()):
            unclipped = raw[on_prefix].clamp_(0.0, 1.0)  # the trajectory of a larger ball
            inside = _inside(unclipped, x0[on_prefix], eps)  # then equal to xa (exact)
            rows = idx[active[on_prefix]]
            prefix.point[rows[inside]] = unclipped[inside]
            prefix.steps[rows[inside]] += 1
            prefix.next[rows[~inside]] = unclipped[~inside]
            prefix.has_next[rows[~inside]] = True
            on_prefix[on_prefix.clone()] = inside
        left = left - 1
    return found


def _pgd_accuracy_fast(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    grid: np.ndarray,
    batch_size: int,
    generator: torch.Generator | None,
    steps: int = 40,
    step_size: float = 0.01,
    random_start: bool = False,
    share_prefix: bool = True,
) -> np.ndarray:
    """PGD accuracy over an ε grid, with images broken at a smaller ε kept broken.

    ε is processed in increasing order. An image is broken at ε if some PGD iterate at ε or
    at any smaller ε of the grid was misclassified: that perturbation lies inside the larger
    ball, so this is a valid attack at least as strong as PGD at ε alone. Clean errors are
    broken at every ε. Within a PGD run each image stops as soon as it is broken. Without a
    random start (and with `share_prefix`), each ε resumes the iterates that no smaller ball
    clipped (:class:`_SharedPrefix`): the same iterates, fewer gradients.
    """
    steps = _check_steps(steps)
    step_size = _check_step_size(step_size)
    broken = _predict(model, x, batch_size) != y  # [N]
    prefix = _SharedPrefix(x) if share_prefix and not random_start else None
    unique_eps, inverse = np.unique(grid, return_inverse=True)  # increasing
    accuracy_unique = np.empty(unique_eps.size, dtype=np.float64)
    for k, eps in enumerate(unique_eps):
        if eps > 0:
            idx = torch.nonzero(~broken).flatten()  # [A] survivors so far
            for chunk in idx.split(batch_size):
                if chunk.numel() == 0:
                    continue
                if prefix is not None:
                    found = _pgd_until_found_shared(
                        model, x, y, chunk, float(eps), steps, step_size, prefix)
                else:
                    found, _ = _pgd_until_found(
                        model, x[chunk], y[chunk], float(eps), steps, step_size, random_start,
                        generator)
                broken[chunk[found]] = True
        accuracy_unique[k] = 1.0 - int(broken.sum()) / len(x)
    return accuracy_unique[inverse.reshape(-1)]


def robust_accuracy_curve(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    attack: str | AttackFn,
    eps_grid: object,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
    **attack_kwargs,
) -> RobustCurve:
    """Accuracy under attack for each ε of a grid (Nassar et al. 2020, §4; Gerum et al. 2022).

    Parameters
    ----------
    model : nn.Module
        Returns logits ``[B, C]``; put it in eval mode before calling.
    x : tensor or array, shape [N, ...]
        Clean inputs in ``[0, 1]``.
    y : tensor or array of int, shape [N]
        True labels.
    attack : {"fgsm", "pgd", "noise"} or callable
        ``"noise"`` is :func:`gaussian_noise` and the grid holds σ. A callable is called as
        ``attack(model, x, y, eps, **attack_kwargs)`` and returns ``x_adv``.
    eps_grid : sequence of float, shape [E]
        Attack strengths, each >= 0, in any order.
    batch_size : int
        Images per model evaluation, >= 1.
    generator : torch.Generator, optional
        Randomness of ``"noise"`` and of PGD's random start.
    **attack_kwargs
        Passed to the attack (``steps``, ``step_size``, ``random_start`` for ``"pgd"``).

    Returns
    -------
    RobustCurve
        ``eps`` and ``accuracy`` (float64, shape [E], in the grid's order) and ``n = N``.

    Notes
    -----
    ``"fgsm"`` computes each image's gradient once for the whole grid (it does not depend
    on ε), with results equal to :func:`robust_accuracy_naive`'s. ``"pgd"`` takes a fast
    path: ε increasing, an image broken at a smaller ε stays broken
    (that perturbation lies in the larger ball), and each image stops being optimized as
    soon as an iterate is misclassified. Its accuracy is never above that of
    :func:`robust_accuracy_naive`, which runs PGD independently at each ε and judges the
    last iterate.
    """
    attack = _resolve_attack(attack)
    grid = _check_eps_grid(eps_grid)
    batch_size = check_int("batch_size", batch_size)
    x = _as_input(x, model)
    y = _as_labels(y, x)
    if attack == "pgd":
        accuracy = _pgd_accuracy_fast(model, x, y, grid, batch_size, generator, **attack_kwargs)
    elif attack == "fgsm" and not attack_kwargs:
        accuracy = _fgsm_accuracy_fast(model, x, y, grid, batch_size)
    else:
        accuracy = _accuracy_per_eps(
            model, x, y, attack, grid, batch_size, generator, attack_kwargs
        )
    return RobustCurve(eps=grid, accuracy=accuracy, n=int(x.shape[0]))


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    attack: str | AttackFn,
    eps_grid: object,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
    **attack_kwargs,
) -> np.ndarray:
    """Accuracy (float64 in ``[0, 1]``, shape [E]) for each ε.

    See :func:`robust_accuracy_curve` for the arguments and the PGD fast path.
    """
    return robust_accuracy_curve(
        model, x, y, attack, eps_grid, batch_size, generator, **attack_kwargs
    ).accuracy


def robust_accuracy_naive(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    attack: str | AttackFn,
    eps_grid: object,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
    **attack_kwargs,
) -> np.ndarray:
    """Reference accuracy curve: every ε run independently on all images.

    Each attack (``"pgd"`` included) runs all its steps on every image and accuracy is
    judged at its output. Slow; the oracle for :func:`robust_accuracy` in tests and
    benchmarks. Arguments and result as in :func:`robust_accuracy`.
    """
    attack = _resolve_attack(attack)
    grid = _check_eps_grid(eps_grid)
    batch_size = check_int("batch_size", batch_size)
    x = _as_input(x, model)
    y = _as_labels(y, x)
    return _accuracy_per_eps(model, x, y, attack, grid, batch_size, generator, attack_kwargs)
