"""Jacobian regularization (Hoffman et al. 2019), the baseline of Nassar et al. 2020, §4.3.

β_j · ½ mean_b ‖∂logits_b/∂x_b‖²_F, estimated with `jacobian_projections` random
projections per sample (`regularizers.JacobianRegularizer`; the paper: β_j = 0.01). The
projections are drawn from the epoch's generator, after the batch order, so a run resumed
from an epoch checkpoint is identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..regularizers import JacobianRegularizer
from ..validation import check_field, is_int
from .base import Method, Penalty

if TYPE_CHECKING:
    from ..config import RunConfig


class JacobianPenalty(Penalty):
    adds_term = True

    def __init__(self, beta: float, projections: int) -> None:
        self.regularizer = JacobianRegularizer(beta, projections)
        self.generator: torch.Generator | None = None

    def start_epoch(self, model: nn.Module, x_train: torch.Tensor,
                    generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 hidden: list[torch.Tensor]) -> torch.Tensor:
        return self.regularizer(model, x, generator=self.generator)


class Jacobian(Method):
    name = "jacobian"
    label = "Jacobian"
    color = "#009E73"  # bluish green
    marker = "^"
    fields = ("beta", "jacobian_projections")
    shown = ("beta",)
    reference = "Hoffman et al. 2019; Nassar et al. 2020, §4.3"

    def validate(self, c: "RunConfig") -> None:
        check_field(is_int(c.jacobian_projections) and c.jacobian_projections >= 1,
                    "jacobian_projections", "an integer >= 1", c.jacobian_projections)

    def penalty(self, c: "RunConfig") -> JacobianPenalty:
        return JacobianPenalty(c.beta, c.jacobian_projections)


METHOD = Jacobian()
