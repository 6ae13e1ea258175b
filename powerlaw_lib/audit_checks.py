"""Gradient-masking checklist of a robustness audit (Athalye et al. 2018; Carlini et al. 2019).

A model can look robust because its gradients are useless to the attacker (shattered,
vanishing or saturated), not because adversarial examples are absent. The checklist
computes, from an :class:`~powerlaw_lib.audit.AuditResult` and a few more model
evaluations, the symptoms these papers list, and reports each check's numbers and
whether it passed; it asserts nothing.

1. **Iterative at least as strong as one-step**: at every ε, each iterative attack (PGD,
   APGD-CE, APGD-T) leaves at most ``tolerance`` images more correct than FGSM.
2. **Black box not stronger than white box**: at every ε, at most ``tolerance`` images are
   broken by Square yet left correct by every white-box attack.
3. **Unbounded attacks succeed**: at a large ε (default 0.5, where every image can reach
   the same uniform grey image, so robustness is no longer possible for all classes), the
   white-box attacks together leave at most ``max_large_eps_accuracy`` of the images
   correct.
4. **Attacks beat random noise**: at every ε, each white-box attack leaves at most
   ``tolerance`` images more correct than uniform noise of the same L∞ size,
   ``clip_[0,1](x + U(-ε, ε))``.
5. **No vanishing gradients**: the fraction of images whose input gradient of the
   cross-entropy at the clean input is exactly zero everywhere is at most
   ``max_zero_gradient_fraction`` (default 0).

Counts are in images and, as in the audit, an image misclassified clean is never correct.

References
----------
Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a false sense of security:
circumventing defenses to adversarial examples", ICML.
Carlini et al. 2019, "On evaluating adversarial robustness", arXiv:1902.06705 (§5, the
checklist).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .attacks import (
    _as_input,
    _as_labels,
    _check_nonnegative,
    _logits_and_input_gradient,
    _predict,
)
from .audit import (
    BLACK_BOX,
    ITERATIVE,
    WHITE_BOX,
    AuditResult,
    _check_model,
    _check_seed,
    audit_accuracy,
)

__all__ = ["CHECKS", "MaskingReport", "masking_checklist", "uniform_noise"]

#: Names of the five checks, in the checklist's order.
CHECKS: tuple[str, ...] = ("iterative", "black_box", "large_eps", "noise", "zero_gradient")


@dataclass(frozen=True)
class MaskingReport:
    """Numbers and verdicts of the gradient-masking checklist.

    Attributes
    ----------
    eps : np.ndarray of float64, shape [E]
        The audit's ε grid.
    n : int
        Number of images.
    tolerance : int
        Images allowed in the wrong direction by checks 1, 2 and 4.
    iterative_excess : np.ndarray of int64, shape [E]
        (1) Max over the iterative attacks of (images correct under it − under FGSM).
    iterative_passed : bool
        (1) ``iterative_excess <= tolerance`` at every ε.
    black_box_only : np.ndarray of int64, shape [E]
        (2) Images broken by Square and left correct by every white-box attack.
    black_box_passed : bool
        (2) ``black_box_only <= tolerance`` at every ε.
    large_eps : float
        (3) The ε of the unbounded-attack check.
    large_eps_accuracy : float
        (3) Accuracy under all the white-box attacks together at ``large_eps``.
    large_eps_passed : bool
        (3) ``large_eps_accuracy <= max_large_eps_accuracy``.
    noise_accuracy : np.ndarray of float64, shape [E]
        (4) Accuracy under uniform noise ``U(-ε, ε)``.
    noise_excess : np.ndarray of int64, shape [E]
        (4) Max over the white-box attacks of (images correct under it − under noise).
    noise_passed : bool
        (4) ``noise_excess <= tolerance`` at every ε.
    zero_gradient_fraction : float
        (5) Fraction of images whose input gradient is exactly zero everywhere.
    zero_gradient_passed : bool
        (5) ``zero_gradient_fraction <= max_zero_gradient_fraction``.
    passed : bool
        Every check passed.
    """

    eps: np.ndarray
    n: int
    tolerance: int
    iterative_excess: np.ndarray
    iterative_passed: bool
    black_box_only: np.ndarray
    black_box_passed: bool
    large_eps: float
    large_eps_accuracy: float
    large_eps_passed: bool
    noise_accuracy: np.ndarray
    noise_excess: np.ndarray
    noise_passed: bool
    zero_gradient_fraction: float
    zero_gradient_passed: bool
    passed: bool

    @property
    def failed(self) -> tuple[str, ...]:
        """Names (from :data:`CHECKS`) of the checks that failed, in order."""
        return tuple(name for name in CHECKS if not getattr(self, f"{name}_passed"))


# ----------------------------------------------------------------------------- validation


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value}")
    return value


def _check_tolerance(tolerance: int) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be an integer >= 0 (images), got {tolerance!r}")
    return int(tolerance)


def _check_result(result: AuditResult, clean: np.ndarray) -> AuditResult:
    if result.n != clean.size or not np.array_equal(result.clean, clean):
        raise ValueError("result must come from audit_accuracy on this model, x and y "
                         "(its clean outcomes differ)")
    members = set(result.attacks)
    if "fgsm" not in members or "square" not in members or not members & set(ITERATIVE):
        raise ValueError(
            f"result must include 'fgsm', 'square' and one of {ITERATIVE}, got {result.attacks}"
        )
    return result


# ----------------------------------------------------------------------------- noise and gradients


def uniform_noise(
    x: torch.Tensor | np.ndarray, eps: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform L∞ noise ``clip_[0,1](x + U(-eps, eps))``, i.i.d. per entry.

    Parameters
    ----------
    x : tensor or array, shape [B, ...]
        Clean inputs in ``[0, 1]``.
    eps : float
        Half-width of the noise, >= 0.
    generator : torch.Generator, optional
        Source of the noise, for reproducibility.

    Returns
    -------
    torch.Tensor, shape [B, ...]
        Noisy inputs in ``[0, 1]`` with ``|x_noisy - x|_∞ <= eps``.
    """
    eps = _check_nonnegative("eps", eps)
    x = _as_input(x, None)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # [B, ...]
    return (x + (2.0 * noise - 1.0) * eps).clamp_(0.0, 1.0)


def _noise_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, grid: np.ndarray, clean: torch.Tensor,
    batch_size: int, seed: int,
) -> np.ndarray:
    """[E, N] bool: clean-correct and correct under uniform noise of each ε."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    rows = []
    for eps in grid:
        noisy = uniform_noise(x, float(eps), generator)  # [N, ...]
        rows.append((clean & (_predict(model, noisy, batch_size) == y)).cpu().numpy())
    return np.stack(rows)


def _zero_gradient_fraction(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> float:
    """Fraction of images whose ∇_x CE at the clean input is exactly zero everywhere."""
    zero = 0
    for i in range(0, len(x), batch_size):
        _, grad = _logits_and_input_gradient(model, x[i : i + batch_size], y[i : i + batch_size])
        zero += int((grad.reshape(len(grad), -1) == 0).all(dim=1).sum())
    return zero / len(x)


# ----------------------------------------------------------------------------- the checks


def _count(correct: np.ndarray) -> np.ndarray:
    return correct.sum(axis=1).astype(np.int64)  # [E]


def _iterative_excess(result: AuditResult) -> np.ndarray:
    fgsm = _count(result.correct["fgsm"])
    excess = [_count(result.correct[a]) - fgsm for a in ITERATIVE if a in result.attacks]
    return np.max(excess, axis=0)


def _white_box_and(result: AuditResult) -> np.ndarray:
    return np.logical_and.reduce([result.correct[a] for a in WHITE_BOX if a in result.attacks])


def _black_box_only(result: AuditResult) -> np.ndarray:
    broken = np.logical_or.reduce([~result.correct[a] for a in BLACK_BOX if a in result.attacks])
    return _count(broken & _white_box_and(result))


def _large_eps_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, result: AuditResult, large_eps: float
) -> tuple[float, float]:
    """(ε used, white-box accuracy there): the grid's largest ε if >= large_eps, else a run."""
    k = int(np.argmax(result.eps))
    if result.eps[k] >= large_eps:
        return float(result.eps[k]), float(_white_box_and(result)[k].mean())
    run = audit_accuracy(
        model, x, y, [large_eps], attacks=[a for a in WHITE_BOX if a in result.attacks],
        batch_size=result.batch_size, seed=result.seed, steps=result.steps,
        n_queries=result.n_queries, n_targets=result.n_targets,
    )
    return large_eps, float(run.robust_accuracy[0])


def masking_checklist(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    result: AuditResult,
    large_eps: float = 0.5,
    max_large_eps_accuracy: float = 0.01,
    tolerance: int = 2,
    max_zero_gradient_fraction: float = 0.0,
    seed: int = 0,
) -> MaskingReport:
    """Run the five gradient-masking checks on an audit (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        The audited model, in evaluation mode.
    x : tensor or array, shape [N, C, H, W]
        The audited images, in ``[0, 1]``.
    y : tensor or array of int, shape [N]
        Their labels.
    result : AuditResult
        ``audit_accuracy(model, x, y, ...)``; its attacks must include ``"fgsm"``,
        ``"square"`` and an iterative attack.
    large_eps : float
        ε of the unbounded-attack check, > 0. When the grid's largest ε is at least this,
        the audit's outcomes there are used; otherwise the white-box attacks of the audit
        run once more at ``large_eps`` with its settings.
    max_large_eps_accuracy : float
        Accuracy in ``[0, 1]`` allowed at ``large_eps``.
    tolerance : int
        Images, >= 0, allowed in the wrong direction by checks 1, 2 and 4.
    max_zero_gradient_fraction : float
        Fraction in ``[0, 1]`` of images allowed an all-zero input gradient.
    seed : int
        Seed of the uniform noise, >= 0.

    Returns
    -------
    MaskingReport
        Each check's numbers and verdict, and ``passed`` (all five passed).
    """
    large_eps = _check_nonnegative("large_eps", large_eps)
    if large_eps == 0:
        raise ValueError("large_eps must be > 0, got 0.0")
    max_large_eps_accuracy = _check_fraction("max_large_eps_accuracy", max_large_eps_accuracy)
    max_zero_gradient_fraction = _check_fraction(
        "max_zero_gradient_fraction", max_zero_gradient_fraction
    )
    tolerance = _check_tolerance(tolerance)
    seed = _check_seed(seed)
    _check_model(model)
    x = _as_input(x, model)
    y = _as_labels(y, x)
    if not isinstance(result, AuditResult):
        raise ValueError(f"result must be an AuditResult, got {type(result).__name__}")
    clean = _predict(model, x, result.batch_size) == y  # [N]
    result = _check_result(result, clean.cpu().numpy())

    iterative = _iterative_excess(result)
    black_box = _black_box_only(result)
    used_eps, large_accuracy = _large_eps_accuracy(model, x, y, result, large_eps)
    noise = _noise_correct(model, x, y, result.eps, clean, result.batch_size, seed)
    noise_excess = np.max(
        [_count(result.correct[a]) - _count(noise) for a in WHITE_BOX if a in result.attacks],
        axis=0,
    )
    zero_fraction = _zero_gradient_fraction(model, x, y, result.batch_size)

    verdicts = {
        "iterative": bool(np.all(iterative <= tolerance)),
        "black_box": bool(np.all(black_box <= tolerance)),
        "large_eps": large_accuracy <= max_large_eps_accuracy,
        "noise": bool(np.all(noise_excess <= tolerance)),
        "zero_gradient": zero_fraction <= max_zero_gradient_fraction,
    }
    return MaskingReport(
        eps=result.eps,
        n=result.n,
        tolerance=tolerance,
        iterative_excess=iterative,
        iterative_passed=verdicts["iterative"],
        black_box_only=black_box,
        black_box_passed=verdicts["black_box"],
        large_eps=used_eps,
        large_eps_accuracy=large_accuracy,
        large_eps_passed=verdicts["large_eps"],
        noise_accuracy=noise.mean(axis=1),
        noise_excess=noise_excess.astype(np.int64),
        noise_passed=verdicts["noise"],
        zero_gradient_fraction=zero_fraction,
        zero_gradient_passed=verdicts["zero_gradient"],
        passed=all(verdicts.values()),
    )
