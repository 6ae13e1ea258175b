"""Tables of stored results, as Markdown, for the chapters (mean ± sd over seeds).

The chapters display these with `IPython.display.Markdown`; they compute nothing themselves.
Groups are `analysis.group_by_method` dictionaries: display label -> results of its seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from .analysis import compare, metric_values, refit_alphas, seed_curve_means, summarize
from .config import RunConfig
from .evaluation import metric_name
from .store import Result

if TYPE_CHECKING:
    from .alpha_analysis import Best, PenaltyLoad, PenaltyPair
    from .analysis import Comparison
    from .audits import AuditRecord
    from .claims import AuditVerdict, Claim, PairedReading

Groups = dict[str, list[Result]]


def markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: one header row, a rule, and the rows (cells as text, '|' escaped)."""
    width = len(header)
    if any(len(r) != width for r in rows):
        raise ValueError(f"every row must have {width} cells, like the header")

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * width, *(line(r) for r in rows)])


def _percent(results: Sequence[Result], metric: str, digits: int = 1) -> str:
    return f"{summarize(100 * metric_values(results, metric)):.{digits}f}"


def _unbroken(cell: str) -> str:
    """``cell`` with the "± sd" of its "mean ± sd" kept together (a no-break space after ±),
    so that a narrow column breaks a value only before its ±: "93.31" over "± 0.08"."""
    return cell.replace(" ± ", " ±\u00a0")


def results_table(groups: Groups, layer: int = 1, eps: Sequence[float] = (0.05, 0.1),
                  suffix: str = "") -> list[list[str]]:
    """Rows (method, clean, FGSM and PGD at each ε, fitted α, effective dimension) of
    every group, for `markdown(results_header(eps), rows)`; `suffix` is added to labels."""
    rows = []
    for label, rs in groups.items():
        cells = [f"{label}{suffix}", _percent(rs, "clean_accuracy", 2)]
        cells += [_percent(rs, metric_name(a, e)) for a in ("fgsm", "pgd") for e in eps]
        cells.append(f"{summarize(metric_values(rs, f'layer{layer}_alpha')):.2f}")
        cells.append(f"{summarize(metric_values(rs, f'layer{layer}_effective_dim')):.0f}")
        rows.append(cells)
    return rows


def epoch_check_table(runs: Sequence[tuple[str, RunConfig, Result | None]]) -> str:
    """What more epochs change: one row per (label, config, stored result or None) with the
    epochs, clean accuracy, PGD accuracy averaged over its ε grid (%), the last hidden
    layer's fitted α and the penalty ÷ β of the last epoch ("–" without one; "not run yet"
    cells for a result not stored). For the deep grid's epoch checks (`grids.deep_epoch_checks`)."""
    rows = []
    for label, config, r in runs:
        if r is None:
            rows.append([label, config.epochs, *["not run yet"] * 4])
            continue
        depth = len(config.hidden_widths)
        penalty = r.history[-1].get("penalty", 0.0) if r.history else 0.0
        rows.append([label, config.epochs, f"{100 * r.metrics['clean_accuracy']:.2f}",
                     f"{100 * float(seed_curve_means([r], 'pgd')[0]):.1f}",
                     f"{r.metrics[f'layer{depth}_alpha']:.2f}",
                     f"{penalty / config.beta:.3f}" if penalty else "–"])
    return markdown(["run", "epochs", "clean acc. (%)", "PGD, mean over ε (%)",
                     "α, last hidden layer", "penalty ÷ β, last epoch"], rows)


def results_header(eps: Sequence[float] = (0.05, 0.1)) -> list[str]:
    return ["method", "clean acc. (%)", *(f"{a} ε={e:g} (%)" for a in ("FGSM", "PGD") for e in eps),
            "fitted α", "effective dim."]


def strength_table(groups: Groups, config: RunConfig) -> str:
    """PGD as in the curves beside PGD with restarts, on the same images, at each
    `config.strength_eps` (the attack-strength check of `evaluation`)."""
    header = ["method"]
    for e in config.strength_eps:
        header += [f"PGD-{config.pgd_steps} ε={e:g} (%)",
                   f"{config.strength_restarts}×{config.strength_steps} restarts ε={e:g} (%)"]
    rows = [[label, *(_percent(rs, metric_name(a, e)) for e in config.strength_eps
                      for a in ("strength_pgd", "strength_restarts"))]
            for label, rs in groups.items()]
    return markdown(header, rows)


def effect_table(per_seed_a: dict[str, np.ndarray], per_seed_b: dict[str, np.ndarray],
                 name_a: str, name_b: str, unit: str = "%", scale: float = 100.0) -> str:
    """Per method: mean of a, mean of b, a − b ± its standard error, and whether |a − b|
    exceeds two standard errors (a two-sided version of `analysis.compare`)."""
    rows = []
    for label in per_seed_a:
        a, b = per_seed_a[label], per_seed_b[label]
        c = compare(a, b)
        rows.append([label, f"{scale * np.mean(a):.1f}", f"{scale * np.mean(b):.1f}",
                     f"{scale * c.difference:+.1f} ± {scale * c.standard_error:.1f}",
                     "yes" if c.significant else "no"])
    return markdown(["method", f"{name_a} ({unit})", f"{name_b} ({unit})",
                     f"{name_a} − {name_b} (points ± SE)", "significant (two-sided, 2 SE)"], rows)


def paired_table(readings: Sequence["PairedReading"], arch_labels: dict[str, str],
                 variant_labels: dict[str, str]) -> str:
    """The claims' comparisons read two ways (`claims.paired_readings`): one row each with
    the claim, the network, "variant − variant" and the curve, then the difference ± its
    standard error in points (2 decimals), seeds as independent samples (Welch, the claims' rule) and
    paired by seed; a reading beyond two standard errors is in bold."""
    def cell(c) -> str:
        text = f"{100 * c.difference:+.2f} ± {100 * c.standard_error:.2f}"
        return f"**{text}**" if c.significant else text

    def name(variant: str) -> str:                       # "(vanilla + whitening)"
        label = variant_labels.get(variant, variant)
        return f"({label})" if " + " in label else label

    rows = [[str(r.claim), arch_labels.get(r.arch, r.arch), f"{name(r.variant)} − {name(r.minus)}",
             "white noise" if r.curve == "noise" else r.curve.upper(),
             cell(r.welch), cell(r.paired), str(r.n_pairs)] for r in readings]
    return markdown(["claim", "network", "difference", "curve", "seeds independent (Welch)",
                     "paired by seed", "pairs"], rows)


def paired_numbers_table(claims: Sequence["Claim"], paired: Sequence["Claim"],
                         label: Callable[[str], str]) -> str:
    """The numbers behind claims read two ways (the rule's `claims` and the same claims
    ``paired`` by seed): one row per estimate with a standard error, i.e. every pair of
    numbers ``<name>_diff`` / ``<name>_slope`` and ``<name>_se`` (points), labelled
    ``label(name)``; "–" where not measured, bold beyond two standard errors."""
    by_number = {c.number: c for c in paired}

    def cell(numbers: dict, name: str, kind: str) -> str:
        value, se = numbers.get(f"{name}_{kind}", np.nan), numbers.get(f"{name}_se", np.nan)
        if np.isnan(value) or np.isnan(se):
            return "–"
        text = f"{value:+.2f} ± {se:.2f}"
        return f"**{text}**" if abs(value) > 2 * se > 0 else text

    rows = []
    for c in claims:
        for key in c.numbers:
            name, _, kind = key.rpartition("_")
            if kind in ("diff", "slope") and f"{name}_se" in c.numbers:
                rows.append([str(c.number), label(name), cell(c.numbers, name, kind),
                             cell(by_number[c.number].numbers, name, kind)])
    return markdown(["claim", "estimate (points)", "seeds independent (the rule)", "paired by seed"],
                    rows)


def settings_table(rows: Sequence[tuple[str, str, str, str]]) -> str:
    """The settings table of a chapter: (setting, paper text, authors' code, this chapter)."""
    return markdown(["", "paper (text)", "authors' code", "this chapter"], rows)


def shallow_settings(config: RunConfig, n_seeds: int, betas: Sequence[float]) -> str:
    """Settings of the shallow chapter (Nassar et al. 2020, §4.1) against the paper's text
    and the authors' code, with this chapter's values read from its first config."""
    c = config
    train = "60,000" if c.train_subset is None else f"{c.train_subset:,}"
    test = "10,000" if c.test_subset is None else f"{c.test_subset:,}"
    amsgrad = " (amsgrad)" if c.optimizer == "amsgrad" else ""
    rows = [
        ("network", "784-2000-10, sigmoidal (tanh) units",
         "784-2000-10 tanh, BN after tanh (`bn=True` for §4.1)",
         f"784-{c.hidden[0]}-10 tanh, BN after tanh; also without BN"),
        ("regularized tensor", "hidden layer", "hidden layer after BN", "hidden layer after BN"),
        ("α, τ, β", "1, 10, {1, 2, 5}", "1, 10 (κ anchored at rank τ+1, sum from τ+2)",
         f"1, 10 (κ at rank τ, sum from τ, as the text), β ∈ {sorted(set(betas))}"),
        ("eigenvectors", "full training set, every epoch", "full set (covariance / n), every epoch",
         "full set (covariance / (n−1)), every epoch, eval mode"),
        ("optimizer", "Adam, lr 1e-4", "Adam (amsgrad), lr 1e-3, batch 3500",
         f"Adam{amsgrad}, lr {c.lr:g}, batch {c.batch_size}"),
        ("epochs", "not stated", "50", f"{c.epochs}"),
        ("seeds", "3", "3", f"{n_seeds}"),
        ("data", "MNIST, inputs in [0, 1]", "MNIST 60k/10k", f"MNIST {train} / {test}"),
        ("FGSM", "eq. 6, ε ≤ 0.2", "full test set",
         f"full test set, ε ∈ {{{c.fgsm_eps[0]:g}, …, {c.fgsm_eps[-1]:g}}}"),
        ("PGD", "eq. 7–8, 40 steps, η = 0.01", "40 steps, no random start",
         f"{c.pgd_steps} steps, η = {c.pgd_step_size:g}, sign of the gradient, no random start, "
         f"{c.pgd_subset or 'all'} fixed test images; an image counts as broken if any "
         "iterate is misclassified"),
        ("precision", "float32 (GPU)", "float32 (GPU)", c.precision),
    ]
    return settings_table(rows)


def deep_settings(mlp: RunConfig | None, cnn: RunConfig | None, n_seeds: int,
                  selection_betas: Sequence[float], jacobian_beta: float) -> str:
    """Settings of the deep chapter (Nassar et al. 2020, §4.2–4.3) against the paper's text
    and the authors' code, this chapter's values read from one config per architecture."""
    c = mlp or cnn
    epochs = " / ".join(f"{x.epochs} ({x.arch.upper()})" for x in (mlp, cnn) if x)
    batches = " / ".join(f"{x.batch_size} ({x.arch.upper()})" for x in (mlp, cnn) if x)
    amsgrad = " (amsgrad)" if c.optimizer == "amsgrad" else ""
    mlp_text = ("784-" + "-".join(str(w) for w in mlp.hidden_widths) + "-10, tanh, no batch norm"
                if mlp else "not run")
    cnn_text = (f"same with FC {cnn.hidden_widths[-1]}; max-pool before tanh (identical values), "
                "no padding" if cnn else "not run")
    rows = [
        ("MLP", "784-1000-1000-1000-10, tanh", "same, no batch norm", mlp_text),
        ("CNN", "conv 16, conv 32, FC 1000", "conv3×3 16 → pool → conv3×3 32 → pool → FC 1000, tanh",
         cnn_text),
        ("whitening", "after the 2nd hidden layer", "batch Cholesky, + 1e-5·I",
         "after h2 (MLP) / the flattened last conv output (CNN); batch statistics in "
         "training, frozen on the training set for evaluation"),
        ("SpecReg", "α = 1, τ = 10, β not stated", "β from {1, 2, 5}",
         "α = 1, τ = 10, β ∈ {" + ", ".join(f"{b:g}" for b in sorted(set(selection_betas)))
         + "} chosen by the rule below"),
        ("Jacobian", "β = 0.01; eq. 11 writes ‖∂L/∂x‖² (the loss's input gradient), "
         "citing Hoffman et al.", "Hoffman et al.'s ‖∂logits/∂x‖² (Frobenius), 1 random "
         "projection",
         f"β = {jacobian_beta:g}, ½ mean ‖∂logits/∂x‖² (Frobenius), 1 random projection"),
        ("optimizer", "Adam, lr 1e-4", "Adam (amsgrad), lr 1e-4", f"Adam{amsgrad}, lr {c.lr:g}"),
        ("batch", "1.5 × the widest layer (MLP 1500; CNN: 4056 for its 2704-wide first layer)",
         "1500 (MLP) / 6000 (CNN)", batches),
        ("epochs", "not stated", "100", epochs),
        ("seeds", "3", "3", f"{n_seeds}"),
        ("attacks", "FGSM, PGD-40 (η = 0.01), white noise", "same",
         f"same; PGD on {c.pgd_subset or 'all'} fixed test images, no random start"),
    ]
    return settings_table(rows)


#: The exponent fits a local-learning comparison reports: (column, ranks, weighted).
ALPHA_FITS = (("Stringer: weighted, ranks 11–500", (11, 500), True),
              ("Holzhausen: OLS, ranks 2–500", (2, 500), False))


def alpha_fits_table(groups: Groups, spectra: Sequence[tuple[str, str]]) -> str:
    """α of each group's stored spectra, refitted with each of `ALPHA_FITS` (mean ± sd).

    `spectra`: (stored spectrum name, its description), e.g. ("layer1", "h"); a group
    without that spectrum gets "–".
    """
    header = ["network", *(f"α of {what}, {fit}" for _, what in spectra for fit, _, _ in ALPHA_FITS)]
    rows = []
    for label, rs in groups.items():
        cells = [label]
        for name, _ in spectra:
            for _, ranks, weighted in ALPHA_FITS:
                cells.append(f"{summarize(refit_alphas(rs, name, ranks, weighted)):.2f}"
                             if all(name in r.spectra for r in rs) else "–")
        rows.append(cells)
    return markdown(header, rows)


def alpha_sweep_table(targets: dict, eps: float) -> str:
    """One setting and penalty of the α sweep (Gerum et al. 2022): per target α* ("none"
    for the unregularized network, key None), the seeds, held-out accuracy (and the
    official test accuracy where stored: CIFAR-10), the last hidden layer's measured
    exponent with Gerum's and with Stringer's fit, FGSM and PGD-40 accuracy at `eps` (the
    caller names it); mean ± sd over seeds."""
    rows = []
    official = any("official_test_accuracy" in r.metrics for rs in targets.values() for r in rs)
    steps = {r.config.pgd_steps for rs in targets.values() for r in rs}
    pgd = f"PGD-{steps.pop()}" if len(steps) == 1 else "PGD"
    for alpha, rs in targets.items():
        layer = f"layer{len(rs[0].config.hidden_widths)}"
        cells = ["none" if alpha is None else f"{alpha:g}", str(len(rs)),
                 _percent(rs, "clean_accuracy", 2)]
        if official:
            cells.append(_percent(rs, "official_test_accuracy", 1))
        cells += [f"{summarize(metric_values(rs, f'{layer}_alpha_gerum')):.2f}",
                  f"{summarize(metric_values(rs, f'{layer}_alpha')):.2f}",
                  _percent(rs, metric_name("fgsm", eps)), _percent(rs, metric_name("pgd", eps))]
        rows.append([_unbroken(c) for c in cells])
    header = ["α*", "seeds", "accuracy (%)", *(["official test (%)"] if official else []),
              "α̂ (Gerum's fit)", "α̂ (Stringer's fit)", "FGSM (%)", f"{pgd} (%)"]
    return markdown(header, rows)


def value_span(values: Iterable[float], fmt: str = "g", empty: str = "–") -> str:
    """The range of ``values`` as text, each end formatted with ``fmt``: "1.8–2.2", a single
    value where both ends read the same ("3"), and ``empty`` for no values."""
    values = list(values)
    if not values:
        return empty
    lo, hi = f"{min(values):{fmt}}", f"{max(values):{fmt}}"
    return lo if lo == hi else f"{lo}–{hi}"


def target_spans(values: Sequence[float], grid: Sequence[float] | None = None) -> str:
    """``values`` (targets α*) as text, each run of neighbours in ``grid`` (the targets in
    increasing order) joined into one span: [2, 2.5, 3, 5] on the grid 0.5, 1, …, 4, 5
    reads "2–3, 5". Without a grid, or for a value not on it, the values are listed."""
    order = {float(g): i for i, g in enumerate(grid or [])}
    if not values or any(float(v) not in order for v in values):
        return ", ".join(f"{v:g}" for v in values)
    spans: list[list[float]] = []
    for v in sorted(values, key=lambda v: order[float(v)]):
        if spans and order[float(v)] == order[spans[-1][-1]] + 1:
            spans[-1].append(float(v))
        else:
            spans.append([float(v)])
    return ", ".join(f"{s[0]:g}" if len(s) == 1 else f"{s[0]:g}–{s[-1]:g}" for s in spans)


def best_alpha_table(best: dict[str, dict[str, "Best"]], titles: dict[str, str],
                     eps: dict[str, float], grid: Sequence[float] | None = None) -> str:
    """The α sweep's best targets (`alpha_analysis.best_by_setting`): per setting and metric
    ("acc": held-out accuracy, "pgd": PGD-40 at the setting's ``eps``), the best α* ("edge"
    when it is the lowest or highest target run), the targets within two standard errors of
    it (neighbours on ``grid`` joined into spans, `target_spans`), and the metric there, at
    α* = 1 and without the penalty, in percent (mean ± sd over seeds)."""
    def cell(value) -> str:
        return "–" if value is None else _unbroken(f"{100 * value.mean:.2f}" + (
            f" ± {100 * value.sd:.2f}" if value.n > 1 else ""))

    rows = [[titles.get(setting, setting),
             "held-out accuracy" if metric == "acc" else f"PGD-40, ε = {eps[setting]:g}",
             f"{b.target:g}" + (" (edge)" if b.at_edge else ""),
             target_spans(b.tied, grid) or "–",
             cell(b.value), cell(b.at_one), cell(b.unregularized)]
            for setting, by_metric in best.items() for metric, b in by_metric.items()]
    return markdown(["setting", "metric", "best α*", "within 2 SE of the best", "there (%)",
                     "at α* = 1 (%)", "unregularized (%)"], rows)


def gains_table(gains: dict[str, dict[str, dict[float, "Comparison"]]], titles: dict[str, str],
                metric_labels: dict[str, str], grid: Sequence[float] | None = None) -> str:
    """The penalized networks against the unregularized one
    (`alpha_analysis.gains_over_unregularized`): per setting and metric
    (``gains[setting][metric][α*]``), the range of the difference over α* in points, the
    targets above and below the unregularized network by more than two standard errors, and
    those without an error estimate (NaN standard error: fewer than two seeds on a side);
    neighbours on ``grid`` are joined into spans (`target_spans`)."""
    def listed(by_target: dict, keep) -> str:
        return target_spans([a for a, c in by_target.items() if keep(c)], grid) or "none"

    def tested(c) -> bool:
        return not np.isnan(c.standard_error)

    rows = []
    for setting, by_metric in gains.items():
        for metric, by_target in by_metric.items():
            if not by_target:
                continue
            d = [100 * c.difference for c in by_target.values()]
            any_tested = any(tested(c) for c in by_target.values())
            above = listed(by_target, lambda c: c.significant and c.difference > 0)
            below = listed(by_target, lambda c: c.significant and c.difference < 0)
            rows.append([titles.get(setting, setting), metric_labels.get(metric, metric),
                         f"{min(d):+.2f} … {max(d):+.2f}", above if any_tested else "–",
                         below if any_tested else "–",
                         listed(by_target, lambda c: not tested(c))])
    return markdown(["setting", "metric", "slope-penalized − unregularized (points, over α*)",
                     "α* above", "α* below", "α* untested"], rows)


def penalty_table(pairs: Sequence["PenaltyPair"], columns: dict[str, tuple[str, float, str]],
                  against_twins: Sequence[str] = ()) -> str:
    """The slope penalty against eq. 2 (`alpha_analysis.penalty_pairs`): one row per target
    ("none": unregularized), two columns per metric of ``columns`` (metric -> (label, scale,
    format)), mean over seeds times the scale. An eq. 2 cell ends in "+" or "−" when it lies
    above or below the slope penalty's by more than two standard errors; for the metrics of
    ``against_twins``, when eq. 2's gain over its unregularized twin does so against the slope
    penalty's gain over its own (`PenaltyPair.gain_difference`)."""
    by_target: dict = {}
    for p in pairs:
        by_target.setdefault(p.target, {})[p.metric] = p
    rows = []
    for target, by_metric in by_target.items():
        row = ["none" if target is None else f"{target:g}"]
        for metric, (_, scale, fmt) in columns.items():
            p = by_metric.get(metric)
            if p is None:
                row += ["–", "–"]
                continue
            d = p.gain_difference if metric in against_twins else p.difference
            mark = ("" if d is None or not d.significant else
                    " +" if d.difference > 0 else " −")
            row += [f"{scale * p.slope.mean:{fmt}}", f"{scale * p.eq2.mean:{fmt}}{mark}"]
        rows.append(row)
    header = ["α*"] + [f"{label}, {who}" for label, _, _ in columns.values()
                       for who in ("slope", "eq. 2")]
    return markdown(header, rows)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific(x: float, significant: int = 2) -> str:
    """``x`` to ``significant`` digits for a reader: plain for 0.01 <= |x| < 1000 (190.6 ->
    "190", 0.0134 -> "0.013"), else as a power of ten (1.25e-07 -> "1.2 × 10⁻⁷", with
    no-break spaces so that a table cell never splits it); "0" for zero, "–" for NaN."""
    if not np.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if 0.01 <= abs(x) < 1000:
        return f"{round(x, significant - 1 - int(np.floor(np.log10(abs(x))))):g}"
    mantissa, exponent = f"{x:.{significant - 1}e}".split("e")
    return f"{mantissa}\u00a0×\u00a010{str(int(exponent)).translate(_SUPERSCRIPT)}"  # no break


def gain_text(c: "Comparison | None", scale: float = 100.0) -> str:
    """A difference as "+x.xx ± y.yy" (times ``scale``: points), without "±" when its
    standard error is NaN (a single seed on a side) and "–" for None (not run)."""
    if c is None:
        return "–"
    se = f" ± {scale * c.standard_error:.2f}" if np.isfinite(c.standard_error) else ""
    return f"{scale * c.difference:+.2f}{se}"


def penalty_load_table(loads: dict[float | None, "PenaltyLoad"], epochs: int) -> str:
    """How much of the loss eq. 2's penalty took and where in the spectrum it came from
    (`alpha_analysis.penalty_loads`): one row per target ("none": unregularized) with the
    largest λ_n/γ_n of the held-out spectrum beyond rank τ and its rank n (the range over
    seeds), the share of eq. 2's sum that
    the ranks above their γ_n carry, the last epoch's penalty term and cross-entropy ("–"
    where float32 could not resolve it), and in how many of the ``epochs`` the penalty
    exceeded the cross-entropy; means over seeds."""
    def peak(load) -> str:
        if not np.isfinite(load.peak_ratio.mean):
            return "–"
        lo, hi = min(load.peak_ranks), max(load.peak_ranks)
        return f"{scientific(load.peak_ratio.mean)} (n = {lo}" + ("" if lo == hi else f"–{hi}") + ")"

    rows = [["none" if a is None else f"{a:g}", peak(load),
             f"{100 * load.above_share.mean:.0f} %" if np.isfinite(load.above_share.mean) else "–",
             scientific(load.penalty.mean),
             f"{load.data_loss.mean:.3f}" if np.isfinite(load.data_loss.mean) else "–",
             f"{load.dominated.mean:.3g} of {epochs}"]
            for a, load in loads.items()]
    return markdown(["α*", "largest λₙ/γₙ, n > τ (rank n)", "share of eq. 2 from ranks above γₙ",
                     "penalty, last epoch", "cross-entropy, last epoch",
                     "epochs with penalty > cross-entropy"], rows)


def local_settings(mnist: RunConfig | None, cifar: RunConfig | None, n_seeds: int,
                   n_cifar_seeds: int) -> str:
    """Settings of the local-learning chapter against Krotov & Hopfield 2019 (the paper) and
    Holzhausen et al. 2024 (their published code), this chapter's values read from one KH
    config per data set. "–": not stated in the source."""
    c = mnist or cifar

    def both(fmt) -> str:
        return " / ".join(f"{fmt(x)} ({name})" for name, x in (("MNIST", mnist), ("CIFAR-10", cifar))
                          if x is not None)

    rows = [
        ("hidden units", "2000", "2000", f"{c.hidden[0]}"),
        ("metric p, Δ", "3, 0.4", "3, 0.4", f"{c.local_p:g}, {c.local_delta:g}"),
        ("rank k", "7 (MNIST), 2 (CIFAR-10)", "7 / 2", both(lambda x: x.local_k)),
        ("ε0, annealing", "0.04 / 0.02, linear to 0", "0.04 / 0.02, linear to 0",
         both(lambda x: f"{x.local_lr:g}") + ", linear to 0"),
        ("minibatch", "100", "100 (MNIST) / 1000 (CIFAR-10)", both(lambda x: x.local_batch_size)),
        ("epochs of the local rule", "–", "1000", both(lambda x: x.local_epochs)),
        ("inputs", "MNIST scaled to [0, 1]", "each image divided by its L3 norm",
         f"each image divided by its L{c.input_norm:g} norm (inside the network, so attacks "
         "act on pixels in [0, 1])"),
        ("pruning", "none", "units with high weight variance zeroed (CIFAR-10)", "none"),
        ("readout", "relu(I)^n, n = 4.5 (MNIST); loss Σ|c − t|^m", "relu(I)^4.5 → linear, cross-entropy",
         f"relu(I)^{c.readout_power:g} × constant gain (1/RMS on the training set) → linear, "
         "cross-entropy"),
        ("readout training", "–", "Adam lr 1e-3, batch 1000, 1000 epochs",
         f"Adam lr {c.lr:g}, batch {c.batch_size}, {c.epochs} epochs"),
        ("seeds", "–", "1", f"{n_seeds} (MNIST) / {n_cifar_seeds} (CIFAR-10)"),
        ("attacks", "–", "FGSM, PGD-20 on correctly classified images, ε in L3-normalised "
         "input units", "FGSM, PGD-40 (no random start) on all / a fixed subset of the test "
         "images, ε in pixel units"),
    ]
    if cifar is None:
        rows = [r for r in rows if r[0] != "pruning"]
    return markdown(["", "Krotov & Hopfield 2019", "Holzhausen et al. 2024 (code)", "this chapter"],
                    rows)


#: Display names of the audit's attacks (`audit.ATTACKS`).
ATTACK_LABELS = {"fgsm": "FGSM", "pgd": "PGD-40", "apgd-ce": "APGD-CE", "apgd-t": "APGD-T",
                 "fab-t": "FAB-T", "square": "Square"}


def audit_table(records: dict[str, "AuditRecord"], attacks: Sequence[str] | None = None,
                clean: bool = True) -> str:
    """One row per audited network and ε: clean accuracy on the audited images (unless not
    `clean`), each attack's accuracy and the worst case over all the attacks of the audit,
    all in % (the masking checks are `audit_checks_table`'s).

    `records`: display label -> `audits.AuditRecord`; `attacks`: columns (default: the
    first record's attacks).
    """
    if not records:
        return "(no audits)"
    first = next(iter(records.values()))
    attacks = tuple(attacks or first.spec.attacks)
    header = ["network", "ε", *(["clean"] if clean else []),
              *(ATTACK_LABELS.get(a, a) for a in attacks), "worst case"]
    rows = []
    for label, r in records.items():
        for i, eps in enumerate(r.spec.eps):
            rows.append([label, f"{eps:g}", *([f"{100 * r.clean_accuracy:.1f}"] if clean else []),
                         *(f"{100 * r.accuracy[a][i]:.1f}" if a in r.accuracy else "–"
                           for a in attacks),
                         f"{100 * r.robust_accuracy[i]:.1f}"])
    return markdown(header, rows)


def audit_checks_table(records: dict[str, "AuditRecord"]) -> str:
    """One row per audited network: the numbers of the gradient-masking checklist
    (`audit_checks`) -- images broken only by the black-box attack, accuracy at the large ε,
    the share of all-zero input gradients -- and the checks that failed."""
    header = ["network", "images broken only by Square", "accuracy at large ε (%)",
              "all-zero input gradients (%)", "checks failed"]
    rows = []
    for label, r in records.items():
        c = r.checklist
        rows.append([label, " / ".join(str(v) for v in c["black_box_only"]),
                     f"{100 * c['large_eps_accuracy']:.1f} (ε = {c['large_eps']:g})",
                     f"{100 * c['zero_gradient_fraction']:.1f}",
                     ", ".join(c["failed"]) or "none"])
    return markdown(header, rows)


def _mean_sd(values: Sequence[float], digits: int = 1) -> str:
    return f"{summarize(100 * np.asarray(values, dtype=float)):.{digits}f}"


def audited_table(groups: dict[str, Sequence["AuditRecord"]]) -> str:
    """One row per method and audited ε: seeds, clean accuracy on the audited images,
    PGD-40 as the papers ran it, the worst case over the ensemble (mean ± sd over seeds, %),
    the gap between the two in points, and the masking checks that failed on any seed.

    `groups`: display label -> the method's audit records (one per seed, same spec)."""
    header = ["method", "ε", "seeds", "clean (%)", "PGD-40 (%)", "worst case (%)",
              "gap (points)", "masking checks failed"]
    rows = []
    for label, records in groups.items():
        if not records:
            continue
        failed = sorted({c for r in records for c in r.checklist["failed"]})
        for i, eps in enumerate(records[0].spec.eps):
            pgd = [r.accuracy["pgd"][i] for r in records]
            worst = [r.robust_accuracy[i] for r in records]
            rows.append([label, f"{eps:g}", len(records), _mean_sd([r.clean_accuracy for r in records]),
                         _mean_sd(pgd), _mean_sd(worst),
                         f"{100 * (np.mean(worst) - np.mean(pgd)):+.1f}", ", ".join(failed) or "none"])
    return markdown(header, rows)


def audit_verdict_table(verdicts: Sequence["AuditVerdict"]) -> str:
    """One row per judged claim (`claims.audit_verdict`): the gains in points under PGD-40
    and under the ensemble's worst case, the margin the latter must exceed, the verdict."""
    header = ["claim", "ε", "gain under PGD-40 (points)", "gain under the worst case (points)",
              "margin (2 SE)", "verdict"]
    rows = [[f"{v.method} more robust than {v.reference}", f"{v.eps:g}",
             f"{v.pgd_difference:+.1f}", f"{v.audited_difference:+.1f}", f"{v.margin:.1f}",
             v.text + (f" (masking: {', '.join(v.masking)})" if v.masking else "")]
            for v in verdicts]
    return markdown(header, rows)


def superseded_table(pairs: Sequence[tuple[Result, Result]], labels: dict[str, str] | None = None,
                     eps: float = 0.05, layer: int = 1) -> str:
    """One row per retrained run (`experiments.retrain`): the superseded result beside the
    result that replaced it -- the first epoch whose training differed, clean accuracy,
    PGD accuracy at `eps` and the fitted α of hidden layer `layer` (old → new).

    `pairs`: (superseded result, its replacement), e.g. `ResultStore.replacements`;
    `labels`: the replacement's config key -> display label, as the chapter names its runs
    (default: the config's label). Rows are sorted by label, then seed; a run replaced more
    than once keeps its replacements in the order given."""
    header = ["run", "seed", "differs from epoch", "clean acc. (%)", f"PGD ε={eps:g} (%)",
              "fitted α"]
    pgd, alpha = metric_name("pgd", eps), f"layer{layer}_alpha"

    def change(old: float, new: float, scale: float, digits: int) -> str:
        return f"{scale * old:.{digits}f} → {scale * new:.{digits}f}"

    rows = [[(labels or {}).get(new.key, new.config.label), old.config.seed,
             old.provenance.get("superseded", {}).get("first_different_epoch", "?"),
             change(old.metrics["clean_accuracy"], new.metrics["clean_accuracy"], 100, 2),
             change(old.metrics[pgd], new.metrics[pgd], 100, 1),
             change(old.metrics[alpha], new.metrics[alpha], 1, 3)]
            for old, new in pairs]
    return markdown(header, sorted(rows, key=lambda row: (row[0], row[1])))
