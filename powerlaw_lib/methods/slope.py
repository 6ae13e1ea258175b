"""The power-law slope losses of Gerum et al. 2022 on the batch spectrum of a layer.

The batch eigenvalues, normalized to sum 1, are fitted over the ranks `slope_ranks` (6..50)
by a line in log–log coordinates; "slope" penalizes β·|α̂ − α*| (the loss of their α sweep),
"slope-mse" β·mean (log λ_n − c + α* log n)² (the distance to the best line of slope −α*).
`slope_method` chooses the batch spectrum: "subspace" (tracked top eigenpairs) or "exact"
(`eigvalsh`, the oracle). See `regularizers.SlopeRegularizer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..regularizers import SlopeRegularizer
from ..validation import check_field
from .base import Method, check_layers
from .layered import LayerPenalty

if TYPE_CHECKING:
    from ..config import RunConfig

SLOPE_METHODS = ("subspace", "exact")
#: Eigenvectors tracked by the "subspace" spectrum (regularizers.SlopeRegularizer).
SLOPE_SUBSPACE = 128


class Slope(Method):
    name = "slope"
    label = "slope"
    color = "#CC79A7"  # reddish purple
    marker = "D"
    fields = ("beta", "alpha", "reg_layers", "slope_ranks", "slope_method")
    shown = ("beta", "alpha", "reg_layers")
    layered = True
    reference = "Gerum et al. 2022, slope loss β·|α̂ − α*|"
    mode = "abs"

    def validate(self, c: "RunConfig") -> None:
        check_layers(c)
        widths = [c.hidden_widths[l - 1] for l in c.reg_layers]
        lo, hi = c.slope_ranks if len(c.slope_ranks) == 2 else (0, 0)
        check_field(len(c.slope_ranks) == 2 and 1 <= lo < hi - 1 and hi <= min(widths),
                    "slope_ranks", "(lo, hi) with 1 <= lo < hi - 1 and hi <= every regularized "
                    "width", c.slope_ranks)
        check_field(c.slope_method in SLOPE_METHODS, "slope_method", f"one of {SLOPE_METHODS}",
                    c.slope_method)
        check_field(c.slope_method != "subspace" or min(widths) >= SLOPE_SUBSPACE,
                    "slope_method", f"'exact' for slope-regularized layers narrower than "
                    f"{SLOPE_SUBSPACE} (the eigenvectors 'subspace' tracks)", c.slope_method)

    def batch_needs(self, c: "RunConfig") -> list[tuple[int, str]]:
        return [(c.slope_ranks[1], f"slope_ranks[1] = {c.slope_ranks[1]} (the slope fit needs "
                                   "a batch spectrum without zeros up to that rank)")]

    def penalty(self, c: "RunConfig") -> LayerPenalty:
        return LayerPenalty({l: SlopeRegularizer(c.alpha, c.beta, ranks=c.slope_ranks,
                                                 mode=self.mode, method=c.slope_method, seed=l)
                             for l in c.reg_layers}, c.precision)


class SlopeMSE(Slope):
    name = "slope-mse"
    label = "slope-MSE"
    color = "#E69F00"  # orange
    marker = "v"
    reference = "Gerum et al. 2022, mean squared distance to the line of slope −α*"
    mode = "mse"


METHOD = Slope()
MSE_METHOD = SlopeMSE()
