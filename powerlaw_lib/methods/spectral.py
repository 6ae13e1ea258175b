"""The spectral regularizer of Nassar et al. 2020, eq. 2 ("SpecReg").

β · Σ_{n ≥ τ} [(λ_n/γ_n − 1)² + relu(λ_n/γ_n − 1)] per regularized layer, with γ_n ∝ n^-α
anchored at rank τ, the batch eigenvalues λ_n taken as Rayleigh quotients in the eigenbasis
of the layer's covariance over the full training set, recomputed at every epoch start
(`regularizers.SpectralRegularizer`). `layer_alphas` gives one α per regularized layer (the
decreasing-α variant the paper leaves as future work, §5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..regularizers import SpectralRegularizer
from ..validation import check_field, is_int
from .base import Method, check_layers
from .layered import LayerPenalty

if TYPE_CHECKING:
    from ..config import RunConfig


class Spectral(Method):
    name = "spectral"
    label = "SpecReg"
    color = "#0072B2"  # blue
    marker = "o"
    fields = ("beta", "alpha", "layer_alphas", "reg_layers", "tau")
    shown = ("beta", "alpha", "reg_layers")
    layered = True
    shades_by_beta = True
    reference = "Nassar et al. 2020, eq. 2"

    def validate(self, c: "RunConfig") -> None:
        check_layers(c)
        check_field(c.layer_alphas == () or (len(c.layer_alphas) == len(c.reg_layers)
                                             and all(a > 0 for a in c.layer_alphas)),
                    "layer_alphas", "() or one α > 0 per entry of reg_layers", c.layer_alphas)
        widths = [c.hidden_widths[l - 1] for l in c.reg_layers]
        check_field(is_int(c.tau) and 1 <= c.tau < min(widths), "tau",
                    f"an integer in 1..{min(widths) - 1} (below every regularized width)", c.tau)

    def batch_needs(self, c: "RunConfig") -> list[tuple[int, str]]:
        return [(c.hidden_widths[l - 1], f"the width of regularized layer {l} (eq. 2 needs a "
                                         "batch wider than the layer)") for l in c.reg_layers]

    def penalty(self, c: "RunConfig") -> LayerPenalty:
        return LayerPenalty({l: SpectralRegularizer(alpha, c.tau, c.beta)
                             for l, alpha in c.alphas.items()}, c.precision)


METHOD = Spectral()
