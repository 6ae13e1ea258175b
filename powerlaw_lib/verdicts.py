"""The papers' claims that a chapter judges, on whatever runs a store holds.

The deep chapter judges the claims of Nassar et al. 2020, §4.2–4.3 (`claims.deep_claims`,
on `grids.deep_groups`); the α sweep those of Gerum et al. 2022
(`alpha_analysis.alpha_claims`, on `alpha_analysis.sweep_groups`). `chapter_claims` runs the
same functions outside the book, for `python -m powerlaw_lib claims GRID`: on a complete
grid it gives the chapter's verdicts and numbers; on a partial one, verdicts on the stored
runs only (a claim whose runs are missing is "not tested"), which the chapter never shows.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from .alpha_analysis import (alpha_claims, best_by_setting, load_reading, penalty_readings,
                             sweep_groups)
from .claims import (Claim, decreasing_alpha_effect, deep_claims,
                     regularized_layer_exponents, verdict)
from .grids import ALPHA_TARGETS, deep_epoch_check, deep_epochs, deep_groups
from .store import Result
from .tables import scientific, target_spans

__all__ = ["CHAPTER_CLAIMS", "PENALTY_NAMES", "chapter_claims", "claim_lines", "extra_lines"]


def _deep(results: Sequence[Result], params: dict) -> list[Claim]:
    return deep_claims(deep_groups(results, params.get("chosen_betas"), deep_epochs(params)))


def _alpha_sweep(results: Sequence[Result], params: dict) -> list[Claim]:
    return alpha_claims(sweep_groups(results))


#: The α sweep's penalty families as the chapter names them.
PENALTY_NAMES = {"slope": "slope penalty", "eq2": "eq. 2 penalty"}

#: Chapters whose claims are judged by library functions: grid name -> f(results, grid
#: parameters) -> claims, in the chapter's order.
CHAPTER_CLAIMS: dict[str, Callable[[Sequence[Result], dict], list[Claim]]] = {
    "deep": _deep, "alpha_sweep": _alpha_sweep}


def chapter_claims(grid: str, results: Sequence[Result], params: dict | None = None
                   ) -> list[Claim]:
    """The claims chapter `grid` judges, on `results` (the stored runs of its grid built
    with `params`, the grid function's keyword parameters)."""
    if grid not in CHAPTER_CLAIMS:
        raise ValueError(f"grid must be one of {', '.join(sorted(CHAPTER_CLAIMS))} "
                         f"(chapters whose claims the library judges), got {grid!r}")
    return CHAPTER_CLAIMS[grid](results, dict(params or {}))


def _number(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return "–" if math.isnan(value) else f"{value:.4g}"


def _percent(s) -> str:
    """A `analysis.Summary` of fractions as "mean ± sd % (n seeds)"."""
    return f"{100 * s.mean:.2f} ± {100 * s.sd:.2f} % ({s.n} seed{'s' if s.n != 1 else ''})"


def claim_lines(claims: Sequence[Claim]) -> list[str]:
    """One line per claim: number, verdict, wording; then the verdict of each of its parts,
    if it has parts; then its numbers (points for accuracy differences, as the chapters glue
    them), untested ones as "–"."""
    lines = []
    for c in claims:
        lines.append(f"{c.number}. {verdict(c.held)}: {c.text}")
        if c.parts:
            lines.append("     parts: " + "; ".join(f"{part}: {verdict(held)}"
                                                   for part, held in c.parts.items()))
        if c.numbers:
            lines.append("     " + "  ".join(f"{k}={_number(v)}" for k, v in c.numbers.items()))
    return lines


def _epoch_check_line(results: Sequence[Result], params: dict) -> str:
    """The deep grid's epoch check (`grids.deep_epoch_check`) among the stored results:
    "not tested" unless both the longer last-layer SpecReg run and its twin are stored."""
    by_key = {r.key: r for r in results}
    effect = deep_epoch_check([r.config for r in results], params, lambda c: by_key.get(c.key))
    if effect["ec_reached"] == "–":
        return "epoch check: not tested (runs missing)"
    arch = effect.pop("ec_arch")
    return (f"epoch check ({arch}, SpecReg last): "
            + "  ".join(f"{k}={_number(v)}" for k, v in effect.items()))


def _load_line(targets: dict) -> str:
    """What eq. 2's penalty took of the shallow network's loss (`alpha_analysis.load_reading`),
    or why that is not told."""
    if not any(a is not None for a in targets):
        return "shallow, eq. 2 penalty load: not tested (runs missing)"
    if any(not r.history for runs in targets.values() for r in runs):
        return "shallow, eq. 2 penalty load: not told (runs without a training history)"
    r = load_reading(targets)

    def spans(values: Sequence[float]) -> str:
        return target_spans(values, ALPHA_TARGETS) or "none"

    plain = ("" if math.isnan(r.plain_tail) else
             f"; unregularized λ_N/λ_τ = {scientific(r.plain_tail)}, what eq. 2 asks at "
             f"α* ≈ {r.matching_alpha:.1f}")
    _, peak, rank_lo, rank_hi = r.peaks(r.above_beta)
    where = ("" if math.isnan(peak) else
             f"; there held-out λ_n/γ_n up to {scientific(peak)} (rank"
             + (f" {rank_lo:.0f})" if rank_lo == rank_hi else f"s {rank_lo:.0f}–{rank_hi:.0f})"))
    return (f"shallow, eq. 2 penalty load: last-epoch penalty above β at α* {spans(r.above_beta)} "
            f"(largest {scientific(r.worst.penalty.mean)} at α* = {r.worst.target:g}){where}; "
            f"above the cross-entropy in every epoch at α* {spans(r.dominated)}{plain}")


def extra_lines(grid: str, results: Sequence[Result], params: dict | None = None) -> list[str]:
    """What the chapter reports beside its claims: the deep chapter's verdicts with the
    seeds paired (`claims.deep_claims(paired=True)`), its last-layer exponents
    (`claims.regularized_layer_exponents`), its decreasing-α variant
    against all-layer α = 1 (Nassar et al.'s future work) and its epoch check (last-layer
    SpecReg trained longer, `grids.deep_epoch_check`); the α sweep's best target per
    setting, for held-out accuracy and for PGD accuracy at the setting's ε (mean ± sd),
    after its verdicts with the seeds paired (`alpha_analysis.alpha_claims(paired=True)`),
    each penalty's reading of the shallow network (`alpha_analysis.penalty_readings`) and
    what eq. 2's penalty took of its loss (`alpha_analysis.load_reading`)."""
    params = dict(params or {})
    if grid == "deep":
        groups = deep_groups(results, params.get("chosen_betas"), deep_epochs(params))
        exponents = ("last hidden layer's α (vanilla, SpecReg last, SpecReg all): "
                     + "  ".join(f"{k}={_number(v)}" for k, v in
                                 regularized_layer_exponents(groups).items()))
        effect = decreasing_alpha_effect(groups)
        decreasing = ("decreasing α: not tested (runs missing)" if effect is None else
                      "decreasing α vs all-layer α = 1: "
                      + "  ".join(f"{k}={_number(v)}" for k, v in effect.items()))
        paired = ("paired by seed (a check of the rule, not the verdicts): " + "  ".join(
            f"{c.number}={verdict(c.held)}" for c in deep_claims(groups, paired=True)))
        return [paired, exponents, decreasing, _epoch_check_line(results, params)]
    if grid == "alpha_sweep":
        groups = sweep_groups(results)
        lines = ["paired by seed (a check of the rule, not the verdicts): " + "  ".join(
            f"{c.number}={verdict(c.held)}" for c in alpha_claims(groups, paired=True))]
        for setting, best in best_by_setting(groups).items():
            for name, b in best.items():
                refs = "".join(f"; {label}: {_percent(v)}" for label, v in
                               (("at α* = 1", b.at_one), ("unregularized", b.unregularized)) if v)
                tied = target_spans(b.tied, ALPHA_TARGETS)
                lines.append(f"best α* for {name} in {setting}: {b.target:g}"
                             f"{' (edge of the targets run)' if b.at_edge else ''} "
                             f"({_percent(b.value)}{refs}; within 2 SE: {tied})")
        for family, r in penalty_readings(groups).items():
            reached = target_spans(r.reached, ALPHA_TARGETS) or "none"
            lines.append(f"shallow, {PENALTY_NAMES[family]}: best α* for acc "
                         f"{r.best_accuracy.target:g} ({_percent(r.best_accuracy.value)}), for pgd "
                         f"{r.best_pgd.target:g} ({_percent(r.best_pgd.value)}); pgd trend "
                         f"{_number(100 * r.pgd_trend.slope)} ± "
                         f"{_number(100 * r.pgd_trend.standard_error)} points per unit α*; "
                         f"reached {reached} (largest miss {r.largest_gap:.2f})")
        lines.append(_load_line(groups.get("shallow", {}).get("eq2", {})))
        return lines
    return []
