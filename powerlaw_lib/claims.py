"""The claims of Nassar et al. 2020, §4.2–4.3, judged on stored results (the deep chapter).

Each claim is a function of the deep chapter's groups (`grids.deep_groups`: architecture
-> variant -> runs sorted by seed) that returns a :class:`Claim`: whether it held (None
when the runs it needs are missing), the numbers it rests on (for the chapter's prose),
and its wording. The rule is the book's: a difference counts when it exceeds twice its
standard error over seeds (`analysis.compare`); robustness is PGD accuracy averaged over
the ε grid (the area under the curve divided by its width), per seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from .analysis import (Comparison, compare, compare_paired, metric_values, seed_curve_means,
                       values_by_seed)
from .store import Result

if TYPE_CHECKING:
    from .audits import AuditRecord

__all__ = ["AuditVerdict", "CLAIM_COMPARISONS", "Claim", "DEEP_CLAIMS", "PairedReading",
           "all_parts", "audit_verdict", "audited_accuracy", "cnn_all_like_last",
           "curve_area", "decreasing_alpha_effect", "deep_claims", "difference",
           "epoch_check_effect", "have", "layer_alpha", "paired_readings",
           "regularized_layer_exponents", "verdict"]

Groups = dict[str, dict[str, list[Result]]]
NAN = float("nan")
#: How close a fitted exponent must be to 1 to count as a 1/n spectrum.
ALPHA_TOLERANCE = 0.1


@dataclass(frozen=True)
class Claim:
    """One claim: its number, wording, verdict (None: not tested) and the numbers behind it;
    ``parts``: for a claim that joins several statements, each one's verdict by wording (the
    claim holds when every part does, `all_parts`)."""

    number: int
    text: str
    held: bool | None
    numbers: dict[str, float | str] = field(default_factory=dict)
    parts: dict[str, bool | None] = field(default_factory=dict)


def all_parts(parts: Iterable[bool | None]) -> bool | None:
    """The verdict of a claim made of ``parts``: False when any part failed, else None
    (not tested) when any part lacks its runs, else True."""
    parts = list(parts)
    return False if False in parts else None if None in parts else True


def verdict(held: bool | None) -> str:
    return "not tested" if held is None else "reproduced" if held else "not reproduced"


def have(groups: Groups, arch: str, *variants: str) -> bool:
    """Whether ``groups`` holds runs of every variant for ``arch``."""
    return arch in groups and all(v in groups[arch] for v in variants)


def curve_area(groups: Groups, arch: str, variant: str, curve: str = "pgd") -> np.ndarray:
    """[seeds] accuracy averaged over the grid of ``curve`` ("pgd", "fgsm", "noise")."""
    return seed_curve_means(groups[arch][variant], curve)


def difference(groups: Groups, arch: str, variant: str, minus: str, curve: str = "pgd",
               paired: bool = False) -> Comparison:
    """``variant`` minus ``minus`` in ``arch``: accuracy averaged over the grid of ``curve``,
    compared over seeds as independent samples (Welch, `analysis.compare`: the claims' rule)
    or, ``paired``, seed by seed (`analysis.compare_paired`)."""
    if paired:
        return compare_paired(_seed_areas(groups, arch, variant, curve),
                              _seed_areas(groups, arch, minus, curve))
    return compare(curve_area(groups, arch, variant, curve), curve_area(groups, arch, minus, curve))


def _seed_areas(groups: Groups, arch: str, variant: str, curve: str) -> dict[int, float]:
    """{seed: accuracy averaged over the grid of ``curve``} of one variant."""
    runs = groups[arch][variant]
    return values_by_seed(runs, seed_curve_means(runs, curve), f"{arch} {variant}")


def layer_alpha(groups: Groups, arch: str, variant: str, layer: int) -> float:
    """Mean over seeds of the fitted α of hidden layer ``layer``."""
    return float(metric_values(groups[arch][variant], f"layer{layer}_alpha").mean())


def _depth(groups: Groups) -> int:
    first = next(rs for g in groups.values() for rs in g.values())
    return len(first[0].config.hidden_widths)


def _gains_over_vanilla(groups: Groups, variant: str, key: str, paired: bool
                        ) -> tuple[dict, dict[str, float]]:
    """PGD-area comparison of ``variant`` against vanilla in each network that has both, and
    its numbers in points: ``{key}_{arch}`` and ``{key}_{arch}_se`` (NaN for a network not run)."""
    gains = {a: difference(groups, a, variant, "vanilla", paired=paired)
             for a in ("mlp", "cnn") if have(groups, a, "vanilla", variant)}
    numbers = {}
    for a in ("mlp", "cnn"):
        numbers[f"{key}_{a}"] = 100 * gains[a].difference if a in gains else NAN
        numbers[f"{key}_{a}_se"] = 100 * gains[a].standard_error if a in gains else NAN
    return gains, numbers


def whitening_brittle(groups: Groups, paired: bool = False) -> Claim:
    """1. Whitening an intermediate layer makes the MLP brittle."""
    text = "whitening makes the MLP brittle"
    if not have(groups, "mlp", "vanilla", "vanilla-wh"):
        return Claim(1, text, None, {"c1_diff": NAN, "c1_se": NAN})
    c = difference(groups, "mlp", "vanilla", "vanilla-wh", paired=paired)
    return Claim(1, text, c.held, {"c1_diff": -100 * c.difference, "c1_se": 100 * c.standard_error})


def last_layer_no_rescue(groups: Groups, paired: bool = False) -> Claim:
    """2. SpecReg on the last layer does not rescue the whitened MLP."""
    text = "last-layer SpecReg does not rescue the whitened MLP"
    if not have(groups, "mlp", "vanilla-wh", "specreg-last-wh"):
        return Claim(2, text, None, {"c2_diff": NAN, "c2_se": NAN})
    c = difference(groups, "mlp", "specreg-last-wh", "vanilla-wh", paired=paired)
    return Claim(2, text, not c.held, {"c2_diff": 100 * c.difference, "c2_se": 100 * c.standard_error})


def last_layer_cnn_not_mlp(groups: Groups, paired: bool = False) -> Claim:
    """3. Last-layer SpecReg helps the CNN but not the MLP (§4.2: for the MLP it "had no
    effect on the robustness", two-sided: neither more nor less robust beyond 2 SE)."""
    text = "last-layer SpecReg helps the CNN but not the MLP"
    gains, numbers = _gains_over_vanilla(groups, "specreg-last", "c3", paired)
    held = gains["cnn"].held and not gains["mlp"].significant if len(gains) == 2 else None
    return Claim(3, text, held, numbers)


def all_layers_help(groups: Groups, paired: bool = False) -> Claim:
    """4. SpecReg on every hidden layer improves both architectures."""
    text = "all-layer SpecReg improves both"
    gains, numbers = _gains_over_vanilla(groups, "specreg-all", "c4", paired)
    held = all(g.held for g in gains.values()) if len(gains) == 2 else None
    return Claim(4, text, held, numbers)


def jacobian_vs_noise(groups: Groups, paired: bool = False) -> Claim:
    """5. Jacobian regularization beats all-layer SpecReg under attack (PGD, beyond 2 SE);
    the gap (Jacobian minus SpecReg) is smaller under white noise than under attack, for
    both networks; for the CNN it reverses (SpecReg ahead under noise, beyond 2 SE). Not
    tested unless both networks have both variants."""
    text = "Jacobian more robust to attacks; the gap shrinks under noise (CNN: reverses)"
    jac = [a for a in ("mlp", "cnn") if have(groups, a, "specreg-all", "jacobian")]
    adv = {a: difference(groups, a, "jacobian", "specreg-all", paired=paired) for a in jac}
    noise = {a: difference(groups, a, "jacobian", "specreg-all", "noise", paired) for a in jac}
    held = (all(adv[a].held for a in jac) and all(noise[a].difference < adv[a].difference for a in jac)
            and noise["cnn"].difference < 0 and noise["cnn"].significant) if len(jac) == 2 else None
    numbers = {f"c5_{kind}_{a}{part}": 100 * (getattr(d[a], field) if a in d else NAN)
               for kind, d in (("adv", adv), ("noise", noise)) for a in ("mlp", "cnn")
               for part, field in (("", "difference"), ("_se", "standard_error"))}
    return Claim(5, text, held, numbers)


def earlier_layers_relax(groups: Groups, paired: bool = False) -> Claim:
    """6. Under all-layer SpecReg the earlier layers move towards 1/n without reaching it
    (every earlier layer closer to α = 1 than the vanilla network's, none within 0.1).
    Numbers: ``c6_not_towards``, the earlier layers no closer to 1 than vanilla's, and
    ``c6_within``, those within 0.1 of 1 (texts, "none"); ``c6_last_ok``, whether the last
    layer is within 0.1. It compares exponents, not seeds: ``paired`` changes nothing."""
    text = "earlier layers relax towards 1/n without reaching it"
    archs = [a for a in ("mlp", "cnn") if have(groups, a, "vanilla", "specreg-all")]
    if not archs:
        return Claim(6, text, None, {"c6_last_ok": "(not run)", "c6_not_towards": "–",
                                     "c6_within": "–"})
    depth = _depth(groups)
    earlier = [(a, l) for a in archs for l in range(1, depth)]
    away = [(a, l) for a, l in earlier
            if abs(layer_alpha(groups, a, "specreg-all", l) - 1) >= abs(layer_alpha(groups, a, "vanilla", l) - 1)]
    within = [(a, l) for a, l in earlier
              if abs(layer_alpha(groups, a, "specreg-all", l) - 1) <= ALPHA_TOLERANCE]
    last_ok = all(abs(layer_alpha(groups, a, "specreg-all", depth) - 1) <= ALPHA_TOLERANCE for a in archs)
    return Claim(6, text, not away and not within,
                 {"c6_last_ok": "is" if last_ok else "is not",
                  "c6_not_towards": _arch_layers_text(away), "c6_within": _arch_layers_text(within)})


def _arch_layers_text(layers: Sequence[tuple[str, int]]) -> str:
    """"none", or the layers per network: "MLP layer 1; CNN layers 1 and 2"."""
    if not layers:
        return "none"
    archs = dict.fromkeys(a for a, _ in layers)
    return "; ".join(f"{a.upper()} " + _layers_text([l for b, l in layers if b == a]) for a in archs)


def jacobian_without_power_law(groups: Groups, paired: bool = False) -> Claim:
    """7. Jacobian-regularized networks are robust without a 1/n spectrum: in every network
    that has both, the Jacobian variant is more robust than vanilla (PGD, beyond 2 SE) and
    its last hidden layer's fitted α is more than `ALPHA_TOLERANCE` from 1."""
    text = "Jacobian networks are robust without a 1/n spectrum"
    archs = [a for a in ("mlp", "cnn") if have(groups, a, "vanilla", "jacobian")]
    depth = _depth(groups) if archs else 0
    alphas = {a: layer_alpha(groups, a, "jacobian", depth) for a in archs}
    numbers = {f"c7_alpha_{a}": alphas.get(a, NAN) for a in ("mlp", "cnn")}
    if not archs:
        return Claim(7, text, None, numbers)
    robust = all(difference(groups, a, "jacobian", "vanilla", paired=paired).held for a in archs)
    return Claim(7, text, robust and all(abs(x - 1) > ALPHA_TOLERANCE for x in alphas.values()),
                 numbers)


def cnn_all_like_last(groups: Groups, paired: bool = False) -> Claim:
    """8. For the CNN, all-layer SpecReg gains about as much as last-layer SpecReg (§4.3:
    "the effect is comparable to just regularizing the last layer"): neither is more robust
    than the other by more than twice the standard error (two-sided)."""
    text = "for the CNN, all-layer SpecReg gains about as much as last-layer SpecReg"
    if not have(groups, "cnn", "specreg-last", "specreg-all"):
        return Claim(8, text, None, {"c8_diff": NAN, "c8_se": NAN})
    c = difference(groups, "cnn", "specreg-all", "specreg-last", paired=paired)
    return Claim(8, text, not c.significant,
                 {"c8_diff": 100 * c.difference, "c8_se": 100 * c.standard_error})


#: The claims of §4.2–4.3, in the paper's order: the seven its discussion lists, then the
#: remark of §4.3 on the CNN.
DEEP_CLAIMS: tuple[Callable[..., Claim], ...] = (
    whitening_brittle, last_layer_no_rescue, last_layer_cnn_not_mlp, all_layers_help,
    jacobian_vs_noise, earlier_layers_relax, jacobian_without_power_law, cnn_all_like_last)


def deep_claims(groups: Groups, paired: bool = False) -> list[Claim]:
    """Every claim of `DEEP_CLAIMS` judged on ``groups``: by the book's rule (seeds as
    independent samples), or ``paired`` by seed (`difference`), a check of that rule."""
    return [claim(groups, paired) for claim in DEEP_CLAIMS]


#: The comparisons the claims of `DEEP_CLAIMS` read (claim, network, variant, minus
#: variant, curve), each as "variant minus variant": accuracy averaged over the curve's grid.
CLAIM_COMPARISONS: tuple[tuple[int, str, str, str, str], ...] = (
    (1, "mlp", "vanilla-wh", "vanilla", "pgd"),
    (2, "mlp", "specreg-last-wh", "vanilla-wh", "pgd"),
    (3, "mlp", "specreg-last", "vanilla", "pgd"), (3, "cnn", "specreg-last", "vanilla", "pgd"),
    (4, "mlp", "specreg-all", "vanilla", "pgd"), (4, "cnn", "specreg-all", "vanilla", "pgd"),
    (5, "mlp", "jacobian", "specreg-all", "pgd"), (5, "cnn", "jacobian", "specreg-all", "pgd"),
    (5, "mlp", "jacobian", "specreg-all", "noise"), (5, "cnn", "jacobian", "specreg-all", "noise"),
    (7, "mlp", "jacobian", "vanilla", "pgd"), (7, "cnn", "jacobian", "vanilla", "pgd"),
    (8, "cnn", "specreg-all", "specreg-last", "pgd"),
)


@dataclass(frozen=True)
class PairedReading:
    """One comparison of `CLAIM_COMPARISONS` read two ways: ``welch``, seeds as independent
    samples (the claims' rule, `analysis.compare`), and ``paired``, seed by seed
    (`analysis.compare_paired`), over ``n_pairs`` common seeds."""

    claim: int
    arch: str
    variant: str
    minus: str
    curve: str
    welch: Comparison
    paired: Comparison
    n_pairs: int


def paired_readings(groups: Groups) -> list[PairedReading]:
    """Every comparison of `CLAIM_COMPARISONS` whose two variants are in ``groups``, by the
    claims' rule (Welch over seeds) and paired by seed: a check of how much the verdicts
    depend on treating the seeds as independent. The runs of one seed share initial weights,
    batch order and evaluation noise, so pairing removes what the seed does to every
    variant alike."""
    out = []
    for claim, arch, variant, minus, curve in CLAIM_COMPARISONS:
        if not have(groups, arch, variant, minus):
            continue
        pairs = ({r.config.seed for r in groups[arch][variant]}
                 & {r.config.seed for r in groups[arch][minus]})
        out.append(PairedReading(claim, arch, variant, minus, curve,
                                 difference(groups, arch, variant, minus, curve),
                                 difference(groups, arch, variant, minus, curve, paired=True),
                                 len(pairs)))
    return out


def decreasing_alpha_effect(groups: Groups) -> dict[str, float | str] | None:
    """Beyond the paper: all-layer SpecReg with α decreasing over depth against α = 1.

    The PGD-area difference (points) and its standard error, the two-sided verdict
    ("more", "less", "neither more nor less" robust), both clean accuracies (%), the
    decreasing variant's fitted α per layer, and which layers end within `ALPHA_TOLERANCE`
    of their own target ("dec_reached"); None when the MLP runs are missing.
    """
    if not have(groups, "mlp", "specreg-all", "specreg-all-decreasing"):
        return None
    d = compare(curve_area(groups, "mlp", "specreg-all-decreasing"),
                curve_area(groups, "mlp", "specreg-all"))
    clean = [100 * float(metric_values(groups["mlp"][v], "clean_accuracy").mean())
             for v in ("specreg-all", "specreg-all-decreasing")]
    depth = _depth(groups)
    fitted = [layer_alpha(groups, "mlp", "specreg-all-decreasing", l) for l in range(1, depth + 1)]
    targets = groups["mlp"]["specreg-all-decreasing"][0].config.layer_alphas   # one per layer
    return {"dec_diff": 100 * d.difference, "dec_se": 100 * d.standard_error,
            "dec_held": ("neither more nor less" if not d.significant
                         else "more" if d.difference > 0 else "less"),
            "dec_clean": clean[1], "all_clean": clean[0],
            "dec_alphas": ", ".join(f"{a:.2f}" for a in fitted),
            "dec_reached": _layers_text([l for l, (a, t) in enumerate(zip(fitted, targets), 1)
                                         if abs(a - t) <= ALPHA_TOLERANCE])}


def regularized_layer_exponents(groups: Groups) -> dict[str, float | str]:
    """Does SpecReg put the layer it regularizes at 1/n? (§4.3: "the regularizer was able to
    enforce a 1/n decay for the last hidden layer of the network".)

    For each network: the last hidden layer's fitted α (mean over seeds; NaN when not run)
    under vanilla, last-layer SpecReg and all-layer SpecReg, and with whitening before it
    (vanilla and last-layer SpecReg), keys
    ``ll_alpha_{arch}_{vanilla|last|all|vanilla_wh|last_wh}``, and for the SpecReg variants
    ``ll_reached_{arch}_{last|all|last_wh}``: "is" or "is not" as that exponent lies within
    `ALPHA_TOLERANCE` of 1, "–" when not run; for the two unregularized variants
    ``ll_side_{arch}_{vanilla|vanilla_wh}``: "steeper than", "flatter than" or "at" 1/n
    (within the tolerance), "–" when not run: whether the penalty must grow the layer's
    tail or shrink it.
    """
    out: dict[str, float | str] = {}
    for arch in ("mlp", "cnn"):
        for short, variant in (("vanilla", "vanilla"), ("last", "specreg-last"), ("all", "specreg-all"),
                               ("vanilla_wh", "vanilla-wh"), ("last_wh", "specreg-last-wh")):
            alpha = layer_alpha(groups, arch, variant, _depth(groups)) if have(groups, arch, variant) else NAN
            out[f"ll_alpha_{arch}_{short}"] = alpha
            if short.startswith("vanilla"):                     # where the penalty starts
                out[f"ll_side_{arch}_{short}"] = ("–" if np.isnan(alpha) else "at"
                                                  if abs(alpha - 1) <= ALPHA_TOLERANCE else
                                                  "steeper than" if alpha > 1 else "flatter than")
            else:
                out[f"ll_reached_{arch}_{short}"] = ("–" if np.isnan(alpha) else "is"
                                                     if abs(alpha - 1) <= ALPHA_TOLERANCE else "is not")
    return out


def epoch_check_effect(main: Result | None, longer: Result | None) -> dict[str, float | str]:
    """What training longer changes in a SpecReg run (the deep chapter's epoch check): does
    the regularized last hidden layer get to 1/n with the authors' epochs?

    ``main`` is the run at the chapter's epochs and ``longer`` its twin trained longer (the
    pairs of `grids.deep_epoch_checks`); either may be None (not stored). Keys:
    ``ec_alpha_main`` / ``ec_alpha_long``, the last hidden layer's fitted α;
    ``ec_penalty_main`` / ``ec_penalty_long``, the last epoch's penalty ÷ β (NaN without one);
    ``ec_epochs_main`` / ``ec_epochs_long``; ``ec_reached``, "is" or "is not" as the longer
    run's α lies within `ALPHA_TOLERANCE` of 1; ``ec_moved``, "closer to", "farther from"
    or "no closer to" as |α − 1| shrinks or grows by more than half that tolerance. The two
    texts are "–" and the numbers NaN when a run is missing.
    """
    def alpha(r: Result) -> float:
        return float(r.metrics[f"layer{len(r.config.hidden_widths)}_alpha"])

    def penalty(r: Result) -> float:
        last = r.history[-1].get("penalty") if r.history else None
        return NAN if last is None else float(last) / r.config.beta

    out: dict[str, float | str] = {"ec_alpha_main": NAN, "ec_alpha_long": NAN,
                                   "ec_penalty_main": NAN, "ec_penalty_long": NAN,
                                   "ec_epochs_main": NAN, "ec_epochs_long": NAN,
                                   "ec_reached": "–", "ec_moved": "–"}
    for name, r in (("main", main), ("long", longer)):
        if r is not None:
            out[f"ec_alpha_{name}"], out[f"ec_penalty_{name}"] = alpha(r), penalty(r)
            out[f"ec_epochs_{name}"] = float(r.config.epochs)
    if main is None or longer is None:
        return out
    a_main, a_long = out["ec_alpha_main"], out["ec_alpha_long"]
    out["ec_reached"] = "is" if abs(a_long - 1) <= ALPHA_TOLERANCE else "is not"
    change = abs(a_long - 1) - abs(a_main - 1)
    out["ec_moved"] = ("closer to" if change < -ALPHA_TOLERANCE / 2 else
                       "farther from" if change > ALPHA_TOLERANCE / 2 else "no closer to")
    return out


def _layers_text(layers: Sequence[int]) -> str:
    """"no layer", "layer 3", "layers 1 and 3", "layers 1, 2 and 3"."""
    if not layers:
        return "no layer"
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return "layers " + ", ".join(map(str, layers[:-1])) + f" and {layers[-1]}"


# ------------------------------------------------------------------------------- the audit


def audited_accuracy(records: Sequence["AuditRecord"], eps_index: int, attack: str | None = None
                     ) -> tuple[float, float]:
    """Accuracy of a method on its audited images at ``spec.eps[eps_index]``: (mean over the
    records (seeds), its variance). ``attack`` None: the worst case over the ensemble;
    else that attack's own accuracy ("pgd": PGD-40 as the papers ran it).

    The variance is that of the mean: the binomial variance of the pooled images,
    p(1 - p) / (images x seeds), plus the variance over seeds / seeds (0 for one seed).
    """
    values = np.array([r.robust_accuracy[eps_index] if attack is None
                       else r.accuracy[attack][eps_index] for r in records])   # [seeds]
    p, n_images = float(values.mean()), sum(len(r.outcomes[r.spec.attacks[0]][eps_index])
                                           for r in records)
    seed_var = float(values.var(ddof=1)) / values.size if values.size > 1 else 0.0
    return p, p * (1 - p) / n_images + seed_var


@dataclass(frozen=True)
class AuditVerdict:
    """Does "``method`` is more robust than ``reference`` at ε", as PGD-40 says it, survive
    the ensemble? Differences in accuracy points (method minus reference)."""

    method: str
    reference: str
    eps: float
    pgd_difference: float        # under PGD-40 on the audited images
    audited_difference: float    # under the worst case over the ensemble
    margin: float                # twice the standard error of the audited difference
    masking: tuple[str, ...]     # the method's failed masking checks
    held: bool | None            # None: PGD-40 does not make the claim here

    @property
    def text(self) -> str:
        return ("no claim (PGD-40 shows no gain)" if self.held is None
                else "survives" if self.held else "does not survive")


def audit_verdict(method: Sequence["AuditRecord"], reference: Sequence["AuditRecord"],
                  eps_index: int, names: tuple[str, str] = ("method", "reference")
                  ) -> AuditVerdict:
    """Judge a robustness claim of the papers on the audits of two methods (their seeds).

    The claim is made when PGD-40 puts ``method`` above ``reference`` by more than twice
    the standard error of the difference (`audited_accuracy`'s variances); it survives
    when the worst case over the ensemble does too and none of ``method``'s masking checks
    failed on any seed.
    """
    pgd_m, pgd_mv = audited_accuracy(method, eps_index, "pgd")
    pgd_r, pgd_rv = audited_accuracy(reference, eps_index, "pgd")
    worst_m, worst_mv = audited_accuracy(method, eps_index)
    worst_r, worst_rv = audited_accuracy(reference, eps_index)
    margin = 2 * float(np.sqrt(worst_mv + worst_rv))
    masking = tuple(sorted({c for r in method for c in r.checklist["failed"]}))
    claimed = pgd_m - pgd_r > 2 * float(np.sqrt(pgd_mv + pgd_rv))
    held = None if not claimed else bool(worst_m - worst_r > margin and not masking)
    return AuditVerdict(names[0], names[1], float(method[0].spec.eps[eps_index]),
                        100 * (pgd_m - pgd_r), 100 * (worst_m - worst_r), 100 * margin,
                        masking, held)
