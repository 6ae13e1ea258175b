"""PGD adversarial training (Madry et al. 2018): the robustness yardstick of the audit.

Every training batch is replaced by its L∞ PGD adversarial examples: `adv_steps` steps of
size `adv_step_size` (sign of the gradient, projection onto the ε-ball of radius `adv_eps`
and [0, 1]) from a uniform random start in the ball, and the network is trained on the
cross-entropy of those examples only (Madry et al.'s min-max objective; no clean term).
The examples are found with the network in evaluation mode (batch norm with its running
statistics, which the attack's forward passes therefore do not change), then the training
step runs in training mode as usual. The random starts come from the epoch's generator,
after the batch order, so a run resumed from an epoch checkpoint is identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..attacks import pgd
from ..validation import check_field, is_int
from .base import Method, Penalty

if TYPE_CHECKING:
    from ..config import RunConfig


class AdversarialInputs(Penalty):
    """No additive term; the training inputs are PGD examples of the batch."""

    def __init__(self, eps: float, steps: int, step_size: float) -> None:
        self.eps, self.steps, self.step_size = eps, steps, step_size
        self.generator: torch.Generator | None = None

    def start_epoch(self, model: nn.Module, x_train: torch.Tensor,
                    generator: torch.Generator) -> None:
        self.generator = generator

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            x_adv = pgd(model, x, y, self.eps, steps=self.steps, step_size=self.step_size,
                        random_start=True, generator=self.generator)  # [B, C, H, W]
        finally:
            model.train(was_training)
        return x_adv.detach()


class Adversarial(Method):
    name = "adversarial"
    label = "PGD-AT"
    color = "#882255"  # wine
    marker = "P"
    fields = ("adv_eps", "adv_steps", "adv_step_size")
    shown = ("adv_eps",)
    reference = "Madry et al. 2018 (PGD adversarial training)"

    def validate(self, c: "RunConfig") -> None:
        check_field(0 < c.adv_eps <= 1, "adv_eps", "0 < adv_eps <= 1 (pixel units)", c.adv_eps)
        check_field(is_int(c.adv_steps) and c.adv_steps >= 1, "adv_steps", "an integer >= 1",
                    c.adv_steps)
        check_field(0 < c.adv_step_size <= 1, "adv_step_size", "0 < adv_step_size <= 1",
                    c.adv_step_size)

    def penalty(self, c: "RunConfig") -> AdversarialInputs:
        return AdversarialInputs(c.adv_eps, c.adv_steps, c.adv_step_size)


METHOD = Adversarial()
