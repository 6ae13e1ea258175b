"""The grid of runs behind each chapter: one function per chapter.

Each function's keyword defaults ARE the chapter's default parameters (the book's
settings), so a script, a test or the command line can ask exactly what a chapter needs:

>>> from powerlaw_lib import grids
>>> from powerlaw_lib.store import ResultStore
>>> ResultStore("data/results").missing(grids.shallow())   # [] when the chapter is complete

Smaller values (fewer seeds, epochs or images) give a quicker but noisier picture; the
chapters say what that means for their conclusions.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from .analysis import select_beta
from .audits import AuditSpec
from .claims import epoch_check_effect
from .config import EPS_GRID, NOISE_GRID, RunConfig
from .store import Result, ResultStore
from .validation import check_field


def _seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    return seeds


def shallow(seeds: Sequence[int] = (0, 1, 2), epochs: int = 50,
            betas: Sequence[float] = (1.0, 2.0, 5.0), no_bn_betas: Sequence[float] = (2.0, 5.0),
            width: int = 2000, batch_size: int = 3000, lr: float = 1e-3,
            optimizer: str = "amsgrad", text_lr_check: Sequence[int] = (0,),
            train_subset: int | None = None, test_subset: int | None = None,
            pgd_subset: int | None = 2000, precision: str = "fp32",
            eps_grid: Sequence[float] = EPS_GRID, noise_grid: Sequence[float] = NOISE_GRID,
            strength_sampling: str = "random") -> list[RunConfig]:
    """Nassar et al. 2020, §4.1: 784-`width`-10 tanh MLP on MNIST, vanilla vs SpecReg.

    With batch norm after the activation: vanilla, and SpecReg (α = 1, τ = 10) on the hidden
    layer for every β in `betas`. Without batch norm (the paper's appendix): vanilla, and
    SpecReg for every β in `no_bn_betas` (none at all when it is empty). Every
    configuration for every seed.

    The optimizer follows the authors' §4.1 code (Adam with amsgrad, lr 1e-3); the paper's
    text gives lr 1e-4. `text_lr_check` adds, for these seeds, the batch-norm vanilla run
    with plain Adam at lr 1e-4, to show what the text's setting gives in the same budget.

    `strength_sampling`: which images of the PGD subset the attack-strength check uses,
    "random" (a fixed random sample) or "first" (its first images, which `data.subset`
    sorts by test index: a harder slice of MNIST). The store keeps both evaluations of
    every network of this grid: "first" came first, and `yardstick` still uses it.
    """
    base = RunConfig(dataset="mnist", arch="mlp", hidden=(width,), activation="tanh",
                     optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs,
                     train_subset=train_subset, test_subset=test_subset,
                     pgd_subset=pgd_subset, precision=precision, fgsm_eps=tuple(eps_grid),
                     pgd_eps=tuple(eps_grid), noise_sigma=tuple(noise_grid),
                     strength_sampling=strength_sampling)
    configs = []
    for seed in _seeds(seeds):
        for bn, bs in ((True, tuple(betas)), (False, tuple(no_bn_betas))):
            if not bn and not bs:
                continue  # no batch-norm-free SpecReg asked for: skip its vanilla twin too
            configs.append(base.replace(batch_norm=bn, seed=seed))
            configs += [base.replace(batch_norm=bn, seed=seed, regularizer="spectral",
                                     reg_layers=(1,), alpha=1.0, tau=10, beta=float(b))
                        for b in bs]
    configs += [base.replace(batch_norm=True, seed=s, **TEXT_LR_CHECK) for s in text_lr_check]
    return configs


#: The optimizer of the paper's text for §4.1, run as a check beside the authors' code's.
TEXT_LR_CHECK = {"optimizer": "adam", "lr": 1e-4}


def is_text_lr_check(config: RunConfig, lr: float = 1e-3, optimizer: str = "amsgrad") -> bool:
    """Is `config` one of `shallow`'s learning-rate check runs (not a main run at `lr`,
    `optimizer`)? A main run at the text's own setting is not a check run."""
    main = config.lr == lr and config.optimizer == optimizer
    return not main and all(getattr(config, k) == v for k, v in TEXT_LR_CHECK.items())


#: The deep chapter's SpecReg variants with a β chosen from `selection_betas` (see `deep`).
DEEP_SPECREG_VARIANTS = ("specreg-last", "specreg-last-wh", "specreg-all")
#: Epochs of the deep networks in the authors' code (MLP and CNN alike).
DEEP_AUTHORS_EPOCHS = 100
#: β chosen for each "arch/variant" by `analysis.select_beta` from the stored seed-0
#: selection runs; a variant without an entry has only its selection runs in the grid.
DEEP_CHOSEN_BETAS: dict[str, float] = {"mlp/specreg-last": 1.0, "mlp/specreg-last-wh": 5.0,
                                      "mlp/specreg-all": 1.0, "cnn/specreg-last": 1.0,
                                      "cnn/specreg-last-wh": 1.0, "cnn/specreg-all": 1.0}


def deep_variant(config: RunConfig) -> str:
    """Name of the deep chapter's variant that `config` belongs to (seed and β excluded):
    the method's label, for a layered method which layers ("-last", "-all", with α
    decreasing over depth "-all-decreasing"), and "-wh" when whitened."""
    wh = "-wh" if config.whiten_after else ""
    name = config.method.label.lower()
    if not config.method.layered:
        return name + wh
    depth = len(config.hidden_widths)
    if config.reg_layers == (depth,):
        return f"{name}-last{wh}"
    if config.reg_layers == tuple(range(1, depth + 1)):
        return f"{name}-all{'-decreasing' if config.layer_alphas else ''}{wh}"
    raise ValueError(f"{config.label} is not a variant of the deep chapter")


def deep(seeds: Sequence[int] = (0, 1, 2), archs: Sequence[str] = ("mlp", "cnn"),
         mlp_epochs: int = 100, cnn_epochs: int = 50, width: int = 1000,
         selection_betas: Sequence[float] = (1.0, 2.0, 5.0), selection_seed: int = 0,
         chosen_betas: dict[str, float] | None = None, jacobian_beta: float = 0.01,
         decreasing_alphas: Sequence[float] = (2.0, 1.5, 1.0), lr: float = 1e-4,
         optimizer: str = "amsgrad", mlp_batch_size: int = 1500, cnn_batch_size: int = 6000,
         train_subset: int | None = None, test_subset: int | None = None,
         pgd_subset: int | None = 2000, strength_subset: int | None = 500,
         eps_grid: Sequence[float] = EPS_GRID, noise_grid: Sequence[float] = NOISE_GRID,
         epoch_check: int = DEEP_AUTHORS_EPOCHS) -> list[RunConfig]:
    """Nassar et al. 2020, §4.2-4.3: the 784-1000-1000-1000-10 MLP and the CNN on MNIST.

    tanh, no batch norm; `width` units in each hidden layer of the MLP and in the CNN's
    fully connected layer (the paper's 1000; smaller only for quick checks). Per
    architecture and seed: vanilla; vanilla with whitening after the
    2nd hidden layer (MLP) or the flattened last conv output (CNN); the Jacobian penalty
    (β_j = `jacobian_beta`, Hoffman et al. 2019); and the SpecReg variants
    `DEEP_SPECREG_VARIANTS` (α = 1, τ = 10): last hidden layer, last hidden layer with
    whitening, every hidden layer.

    β of each SpecReg variant: one run per β of `selection_betas` on `selection_seed`
    (the selection runs), then every seed at the β that `chosen_betas["arch/variant"]`
    names (`None`: `DEEP_CHOSEN_BETAS`, the β that `analysis.select_beta` picks from the
    stored selection runs). Beyond the paper, for the MLP, all-layer SpecReg with α
    decreasing over depth (`decreasing_alphas`, one per hidden layer) at the β chosen for
    "mlp/specreg-all"; `decreasing_alphas=()` leaves it out.

    Epochs: the authors' code trains 100. The MLP keeps 100; the CNN gets 50, decided from
    the measured costs (`make bench`, 2-core AMD EPYC: the MLP part alone is about 12 CPU
    hours at 100 epochs, the CNN part 11.7 at 100 and about 6 at 50, against a budget of
    about 12 hours for the chapter). What the cut costs is measured: the CNN's vanilla and
    last-layer SpecReg runs of `selection_seed` (the latter at its chosen β) are trained
    again for `epoch_check` epochs (the authors' 100; 0, or `cnn_epochs` itself, leaves
    them out). These epoch-check runs stay out of the variants' groups (`deep_groups`) and
    of the β selection; `deep_epoch_checks` pairs each with its main run.
    """
    if isinstance(epoch_check, bool) or not isinstance(epoch_check, int) or epoch_check < 0:
        raise ValueError(f"epoch_check must be an integer >= 0 (0: no epoch check), got {epoch_check!r}")
    chosen = dict(DEEP_CHOSEN_BETAS if chosen_betas is None else chosen_betas)
    unknown = set(chosen) - {f"{a}/{v}" for a in ("mlp", "cnn") for v in DEEP_SPECREG_VARIANTS}
    if unknown:
        raise ValueError(f"chosen_betas: unknown variant(s) {sorted(unknown)}; allowed "
                         f"'mlp/<variant>' or 'cnn/<variant>' with <variant> one of "
                         f"{DEEP_SPECREG_VARIANTS}")
    if not set(archs) <= {"mlp", "cnn"} or not archs:
        raise ValueError(f"archs must be a non-empty subset of ('mlp', 'cnn'), got {archs!r}")
    seeds = _seeds(seeds)
    configs: list[RunConfig] = []
    for arch in archs:
        depth = 3
        base = RunConfig(dataset="mnist", arch=arch, activation="tanh", batch_norm=False,
                         hidden=(width,) * depth if arch == "mlp" else (width,),
                         optimizer=optimizer, lr=lr,
                         batch_size=mlp_batch_size if arch == "mlp" else cnn_batch_size,
                         epochs=mlp_epochs if arch == "mlp" else cnn_epochs,
                         train_subset=train_subset, test_subset=test_subset,
                         pgd_subset=pgd_subset, strength_subset=strength_subset,
                         fgsm_eps=tuple(eps_grid), pgd_eps=tuple(eps_grid),
                         noise_sigma=tuple(noise_grid))
        wh = {"whiten_after": 2}
        last = {"regularizer": "spectral", "reg_layers": (depth,), "alpha": 1.0, "tau": 10}
        every = {**last, "reg_layers": tuple(range(1, depth + 1))}
        specreg = {"specreg-last": last, "specreg-last-wh": {**last, **wh},
                   "specreg-all": every}
        def specreg_runs(variant: str) -> list[RunConfig]:
            beta = chosen.get(f"{arch}/{variant}")
            runs = {(selection_seed, float(b)) for b in selection_betas}
            if beta is not None:
                runs |= {(s, float(beta)) for s in seeds}
            return [base.replace(seed=s, beta=b, **specreg[variant]) for s, b in sorted(runs)]

        configs += [base.replace(seed=s) for s in seeds]
        configs += specreg_runs("specreg-last") + specreg_runs("specreg-all")
        configs += [base.replace(seed=s, regularizer="jacobian", beta=jacobian_beta)
                    for s in seeds]
        configs += [base.replace(seed=s, **wh) for s in seeds]
        configs += specreg_runs("specreg-last-wh")
        beta_all = chosen.get(f"{arch}/specreg-all")
        if arch == "mlp" and decreasing_alphas and beta_all is not None:
            configs += [base.replace(seed=s, beta=float(beta_all), **every,
                                     layer_alphas=tuple(decreasing_alphas)) for s in seeds]
        if arch == "cnn" and epoch_check not in (0, cnn_epochs):
            beta_last = chosen.get("cnn/specreg-last")
            checked = [base] + ([base.replace(beta=float(beta_last), **last)]
                                if beta_last is not None else [])
            configs += [c.replace(seed=selection_seed, epochs=epoch_check) for c in checked]
    return configs


def deep_epochs(params: dict | None = None) -> dict[str, int]:
    """Epochs of the deep grid's main runs, {"mlp": .., "cnn": ..}, from `deep`'s parameters
    ``params`` (its defaults where they are left out)."""
    defaults = inspect.signature(deep).parameters
    params = params or {}
    return {arch: int(params.get(f"{arch}_epochs", defaults[f"{arch}_epochs"].default))
            for arch in ("mlp", "cnn")}


def deep_epoch_checks(configs: Sequence[RunConfig], params: dict | None = None
                      ) -> list[tuple[RunConfig, RunConfig]]:
    """(main run, epoch-check run) pairs of the deep grid ``configs`` built from ``params``:
    each run trained for other epochs than its architecture's main runs (`deep_epochs`),
    with its twin at the main epochs (the same config otherwise)."""
    main = deep_epochs(params)
    return [(c.replace(epochs=main[c.arch]), c) for c in configs if c.epochs != main[c.arch]]


def deep_epoch_check(configs: Sequence[RunConfig], params: dict | None,
                     get: Callable[[RunConfig], Result | None]) -> dict[str, float | str]:
    """The deep chapter's epoch check: `claims.epoch_check_effect` of the last-layer SpecReg
    pair of `deep_epoch_checks(configs, params)` (main run, twin trained longer), its
    results looked up with ``get`` (None: not stored), plus ``ec_arch``, the pair's network.
    The epochs come from the configs, so they are known before the runs; every number is
    NaN and ``ec_arch`` "–" when the grid has no such pair.
    """
    pair = next(((m, l) for m, l in deep_epoch_checks(configs, params)
                 if deep_variant(m) == "specreg-last"), None)
    if pair is None:
        return {**epoch_check_effect(None, None), "ec_arch": "–"}
    effect = epoch_check_effect(get(pair[0]), get(pair[1]))
    effect.update(ec_epochs_main=float(pair[0].epochs), ec_epochs_long=float(pair[1].epochs),
                  ec_arch=pair[0].arch)
    return effect


def deep_beta_selection(store: ResultStore, tolerance: float = 0.01, **grid_params
                        ) -> dict[str, dict]:
    """The β-selection table of the deep chapter, from the stored seed-0 selection runs.

    For each "arch/variant" of `DEEP_SPECREG_VARIANTS` whose selection runs and whose
    reference (vanilla, or vanilla with whitening for the whitened variant) are all stored:
    ``{"accuracy": {β: clean accuracy}, "reference": accuracy, "beta": chosen β}`` with
    the β of `analysis.select_beta`. Variants with a missing run are left out.
    `grid_params` are `deep`'s parameters (chosen_betas is ignored).
    """
    grid_params = {**grid_params, "chosen_betas": {}}
    configs = deep(**grid_params)
    sel_seed = grid_params.get("selection_seed", 0)
    main = deep_epochs(grid_params)
    table: dict[str, dict] = {}
    for arch in grid_params.get("archs", ("mlp", "cnn")):
        runs = [c for c in configs if c.arch == arch and c.seed == sel_seed and c.epochs == main[arch]]
        for variant in DEEP_SPECREG_VARIANTS:
            reference = "vanilla-wh" if variant.endswith("-wh") else "vanilla"
            ref = [store.get(c) for c in runs if deep_variant(c) == reference]
            sel = [store.get(c) for c in runs if deep_variant(c) == variant]
            if not sel or None in sel or None in ref:
                continue
            acc = {r.config.beta: r.metrics["clean_accuracy"] for r in sel}
            ref_acc = ref[0].metrics["clean_accuracy"]
            table[f"{arch}/{variant}"] = {"accuracy": acc, "reference": ref_acc,
                                          "beta": select_beta(acc, ref_acc, tolerance)}
    return table


#: The deep chapter's variants in the order its figures and tables show them.
DEEP_VARIANTS = ("vanilla", "vanilla-wh", "specreg-last", "specreg-last-wh", "specreg-all",
                 "specreg-all-decreasing", "jacobian")


def deep_groups(results, chosen_betas: dict[str, float] | None = None,
                epochs: dict[str, int] | None = None) -> dict[str, dict[str, list]]:
    """The deep chapter's results as {arch: {variant: results sorted by seed}}.

    A SpecReg variant keeps only its runs at the chosen β (`chosen_betas["arch/variant"]`,
    default `DEEP_CHOSEN_BETAS`; the decreasing-α runs use the all-layer β); a variant
    without a chosen β is left out (its β-selection runs are the appendix's). Only runs of
    the main epochs count (``epochs``, {"mlp": .., "cnn": ..}; default `deep_epochs()`):
    the epoch-check runs are left out. Variants come in `DEEP_VARIANTS` order.
    """
    chosen = dict(DEEP_CHOSEN_BETAS if chosen_betas is None else chosen_betas)
    main = deep_epochs() if epochs is None else epochs
    groups: dict[str, dict[str, list]] = {}
    for r in results:
        arch, variant = r.config.arch, deep_variant(r.config)
        if r.config.epochs != main[arch]:
            continue
        if variant.startswith("specreg"):
            beta = chosen.get(f"{arch}/{variant.replace('-decreasing', '')}")
            if beta is None or r.config.beta != beta:
                continue
        groups.setdefault(arch, {}).setdefault(variant, []).append(r)
    return {arch: {v: sorted(g[v], key=lambda r: r.config.seed) for v in DEEP_VARIANTS if v in g}
            for arch, g in groups.items()}


#: Penalty families of the α sweep, by `RunConfig.regularizer`: Gerum's slope penalty and
#: the eq. 2 penalty of Nassar et al. 2020.
ALPHA_FAMILIES: dict[str, str] = {"slope": "slope", "spectral": "eq2"}
#: Target exponents α* of the α sweep (Gerum et al. 2022).
ALPHA_TARGETS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
#: Perturbation grid of Gerum et al. 2022: ε = 0, 0.01, ..., 0.19.
ALPHA_EPS_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(20))
#: The four settings of the α sweep: data set, architecture, hidden widths, batch size, and
#: the ε at which Gerum et al. read robustness off (their figures).
ALPHA_SETTINGS: dict[str, dict] = {
    "shallow": {"dataset": "mnist", "arch": "mlp", "hidden": (2000,), "batch_size": 1500,
                "read_eps": 0.05},
    "deep": {"dataset": "mnist", "arch": "mlp", "hidden": (1000, 1000, 1000),
             "batch_size": 1500, "read_eps": 0.05},
    "cnn-mnist": {"dataset": "mnist", "arch": "cnn", "hidden": (1000,), "batch_size": 6000,
                  "read_eps": 0.1},
    "cnn-cifar10": {"dataset": "cifar10", "arch": "cnn", "hidden": (1000,),
                    "batch_size": 6000, "read_eps": 0.01},
}


def alpha_setting(config: RunConfig) -> str:
    """Which setting of `ALPHA_SETTINGS` a config of the α sweep belongs to (by data set,
    architecture and number of hidden layers, whatever their widths)."""
    for name, s in ALPHA_SETTINGS.items():
        if ((config.dataset, config.arch, len(config.hidden))
                == (s["dataset"], s["arch"], len(s["hidden"]))):
            return name
    raise ValueError(f"{config.label} belongs to no setting of the α sweep")


def alpha_sweep(settings: Sequence[str] = tuple(ALPHA_SETTINGS),
                alphas: Sequence[float] = ALPHA_TARGETS, beta: float = 1.0,
                dense_seeds: Sequence[int] = (0, 1, 2), cnn_seeds: Sequence[int] = (0, 1),
                dense_epochs: int = 50, cnn_epochs: int = 50,
                dense_width: int = 2000, deep_width: int = 1000, cnn_width: int = 1000,
                specreg_alphas: Sequence[float] = ALPHA_TARGETS,
                specreg_seeds: Sequence[int] = (0, 1), specreg_batch_size: int = 3000,
                tau: int = 10, lr: float = 1e-4, optimizer: str = "adam",
                train_subset: int | None = None,
                test_subset: int | None = None, pgd_subset: int | None = 2000,
                strength_subset: int | None = 500,
                eps_grid: Sequence[float] = ALPHA_EPS_GRID,
                noise_grid: Sequence[float] = NOISE_GRID) -> list[RunConfig]:
    """Gerum et al. 2022: which target exponent α* is best? Four settings, one penalty.

    For each setting of `settings` (`ALPHA_SETTINGS`: shallow dense 2000 and deep dense
    3x1000 on MNIST at batch 1500, the CNN on MNIST and on CIFAR-10 at batch 6000), tanh,
    no batch norm, Adam at `lr`, the last hidden layer regularized by Gerum's slope
    penalty β·|α̂ − α*| (ranks 6..50 of the batch spectrum) for every α* in `alphas`, and
    the unregularized baseline; `dense_seeds` / `cnn_seeds` seeds, `dense_epochs` /
    `cnn_epochs` epochs; `dense_width`, `deep_width` (each of the three layers) and
    `cnn_width` (the FC layer) replace the settings' widths (2000, 1000, 1000). CIFAR-10 trains on the first 40,000 training images and is
    evaluated on the last 10,000 (`data.load`: its official test set here holds only
    1,000 images, whose accuracy `run` reports alongside). Robustness: FGSM and PGD-40 over `eps_grid` (0 ... 0.19), the
    attack-strength check at the setting's reading ε.

    Does the answer depend on the regularizer? For the shallow setting, the eq. 2 penalty
    of Nassar et al. (τ = `tau`, the same β) for every α* in `specreg_alphas`, with its
    unregularized twin, at `specreg_batch_size` (eq. 2 needs a batch wider than the
    2000-wide layer), `specreg_seeds` seeds; `specreg_alphas=()` leaves it out. These come
    last in the grid: in grid order every setting's slope runs, which the paper's claims
    read, come before the comparison; in seed order (`run --order seed`) each seed's slope
    runs of all four settings come before that seed's comparison runs.
    """
    unknown = set(settings) - set(ALPHA_SETTINGS)
    if unknown or not settings:
        raise ValueError(f"settings must be a non-empty subset of {tuple(ALPHA_SETTINGS)}, "
                         f"got {tuple(settings)!r}")
    read = {n: ALPHA_SETTINGS[n]["read_eps"] for n in settings}     # the ε each setting is read at
    unread = [f"{n}: {e:g}" for n, e in read.items() if not any(abs(x - e) < 1e-9 for x in eps_grid)]
    if unread:
        raise ValueError(f"eps_grid must contain the ε each setting is read at ({', '.join(unread)}), "
                         f"got {list(eps_grid)}")
    width = {"shallow": dense_width, "deep": deep_width, "cnn-mnist": cnn_width,
             "cnn-cifar10": cnn_width}
    configs: list[RunConfig] = []
    for name in settings:
        s = ALPHA_SETTINGS[name]
        cnn = s["arch"] == "cnn"
        hidden = (width[name],) * len(s["hidden"])
        base = RunConfig(dataset=s["dataset"], arch=s["arch"], hidden=hidden,
                         activation="tanh", batch_norm=False, optimizer=optimizer, lr=lr,
                         batch_size=s["batch_size"], epochs=cnn_epochs if cnn else dense_epochs,
                         train_subset=train_subset, test_subset=test_subset,
                         pgd_subset=pgd_subset, strength_subset=strength_subset,
                         strength_eps=(s["read_eps"],), fgsm_eps=tuple(eps_grid),
                         pgd_eps=tuple(eps_grid), noise_sigma=tuple(noise_grid),
                         sensitivity_top=0, sensitivity_images=0)
        last = (len(base.hidden_widths),)
        seeds = _seeds(cnn_seeds if cnn else dense_seeds)
        configs += [base.replace(seed=seed) for seed in seeds]
        configs += [base.replace(seed=seed, regularizer="slope", reg_layers=last,
                                 alpha=float(a), beta=beta) for a in alphas for seed in seeds]
        if name == "shallow":
            shallow_base, shallow_last = base, last
    if "shallow" in settings and specreg_alphas:        # after the four settings: run last
        eq2 = shallow_base.replace(batch_size=specreg_batch_size)
        sseeds = _seeds(specreg_seeds)
        configs += [eq2.replace(seed=seed) for seed in sseeds]
        configs += [eq2.replace(seed=seed, regularizer="spectral", reg_layers=shallow_last,
                                alpha=float(a), tau=tau, beta=beta)
                    for a in specreg_alphas for seed in sseeds]
    return configs


#: Local-rule settings per data set (Krotov & Hopfield 2019; Holzhausen et al. 2024's
#: code): ranking parameter k, initial learning rate ε0 and minibatch of the local rule.
LOCAL_SETTINGS: dict[str, dict] = {
    "mnist": {"local_k": 7, "local_lr": 0.04, "local_batch_size": 100},
    "cifar10": {"local_k": 2, "local_lr": 0.02, "local_batch_size": 1000},
}
#: CIFAR-10 is far less robust than MNIST: its perturbation grid stops at ε = 0.05 (pixel
#: units), with PGD steps of 0.0025 so that 40 steps still cross the largest ball twice.
CIFAR_EPS_GRID: tuple[float, ...] = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                                     0.04, 0.05)
CIFAR_PGD_STEP = 0.0025


def local_learning(seeds: Sequence[int] = (0, 1, 2), cifar_seeds: Sequence[int] = (0,),
                   width: int = 2000, mnist_local_epochs: int = 60,
                   cifar_local_epochs: int = 250, readout_epochs: int = 100,
                   readout_lr: float = 1e-3, readout_batch_size: int = 100,
                   p: float = 3.0, delta: float = 0.4, power: float = 4.5,
                   input_norm: float = 3.0, shallow_betas: Sequence[float] = (1.0, 2.0, 5.0),
                   backprop_epochs: int = 50, backprop_batch_size: int = 3000,
                   train_subset: int | None = None,
                   test_subset: int | None = None, pgd_subset: int | None = 2000,
                   strength_subset: int | None = 500) -> list[RunConfig]:
    """Krotov & Hopfield 2019 / Holzhausen et al. 2024: a hidden layer learned by a local rule.

    For MNIST (`seeds`) and CIFAR-10 (`cifar_seeds`): `width` hidden units trained by the
    local rule (p, Δ = `delta`, k and ε0 and minibatch per `LOCAL_SETTINGS`, inputs scaled
    to unit L^`input_norm` norm) for `mnist_local_epochs` / `cifar_local_epochs` epochs,
    then a linear readout on relu(I)^`power` trained with Adam (`readout_lr`,
    `readout_batch_size`, `readout_epochs`). The backpropagation networks of the same
    width beside them: on MNIST the shallow chapter's batch-norm networks (vanilla, and
    SpecReg at every β of `shallow_betas`: `shallow` with its settings, `backprop_epochs`
    epochs at batch `backprop_batch_size`), on CIFAR-10 the same vanilla network
    (3072-`width`-10, tanh, batch norm, Adam with amsgrad at lr 1e-3).
    MNIST robustness over the book's ε grid (`EPS_GRID`), CIFAR-10 over `CIFAR_EPS_GRID`.
    """
    unknown = set(shallow_betas) - {1.0, 2.0, 5.0}
    if unknown:
        raise ValueError(f"shallow_betas must be a subset of the shallow chapter's (1, 2, 5), "
                         f"got {tuple(shallow_betas)!r}")
    evaluation = {"test_subset": test_subset, "pgd_subset": pgd_subset,
                  "strength_subset": strength_subset}
    kh = RunConfig(arch="kh", hidden=(width,), batch_norm=False, local_p=p, local_delta=delta,
                   readout_power=power, input_norm=input_norm, optimizer="adam",
                   lr=readout_lr, batch_size=readout_batch_size, epochs=readout_epochs,
                   train_subset=train_subset, **evaluation)
    cifar = {"dataset": "cifar10", "fgsm_eps": CIFAR_EPS_GRID, "pgd_eps": CIFAR_EPS_GRID,
             "pgd_step_size": CIFAR_PGD_STEP, "strength_eps": (0.005, 0.01)}
    configs = [kh.replace(seed=s, local_epochs=mnist_local_epochs, **LOCAL_SETTINGS["mnist"])
               for s in _seeds(seeds)]
    configs += [kh.replace(seed=s, local_epochs=cifar_local_epochs, **cifar,
                           **LOCAL_SETTINGS["cifar10"]) for s in _seeds(cifar_seeds)]
    mnist_backprop = shallow(seeds=seeds, betas=tuple(shallow_betas), no_bn_betas=(),
                             width=width, epochs=backprop_epochs,
                             batch_size=backprop_batch_size, text_lr_check=(),
                             train_subset=train_subset, test_subset=test_subset,
                             pgd_subset=pgd_subset)
    configs += mnist_backprop
    cifar_backprop = mnist_backprop[0].replace(strength_sampling="random",
                                               strength_subset=strength_subset, **cifar)
    configs += [cifar_backprop.replace(seed=s) for s in _seeds(cifar_seeds)]
    return configs


def local_learning_audits(configs: Sequence[RunConfig], /, *, audit_seeds: Sequence[int] = (0,),
                          audit_betas: Sequence[float] = (1.0, 2.0, 5.0),
                          audit_eps: Sequence[float] = (0.05, 0.1), audit_images: int = 1000,
                          audit_steps: int = 100, audit_queries: int = 5000
                          ) -> list[tuple[RunConfig, AuditSpec]]:
    """The audits of the local-learning chapter: (run, spec) pairs among ``configs``.

    The MNIST networks of seeds `audit_seeds`: the local rule, the backprop vanilla network
    and backprop SpecReg at each β of `audit_betas` (the shallow chapter's networks, whose
    audits the audit chapter shares), each attacked at `audit_eps` on
    `audit_images` fixed random test images by the ensemble (`audit_steps` iterations of
    APGD and FAB, `audit_queries` queries of Square; AutoAttack's budgets by default).
    """
    spec = AuditSpec(eps=tuple(audit_eps), images=audit_images, steps=audit_steps,
                     n_queries=audit_queries)
    chosen = [c for c in configs if c.dataset == "mnist" and c.seed in tuple(audit_seeds)
              and (c.arch == "kh" or c.method.plain or c.beta in tuple(audit_betas))]
    return [(c, spec) for c in chosen]


def alpha_sweep_audits(configs: Sequence[RunConfig], /, *,
                       audit_families: Sequence[str] = ("eq2",),
                       audit_alphas: Sequence[float] = (1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0),
                       audit_seeds: Sequence[int] = (0,), audit_eps: Sequence[float] = (0.05, 0.1),
                       audit_images: int = 1000, audit_steps: int = 100,
                       audit_queries: int = 5000) -> list[tuple[RunConfig, AuditSpec]]:
    """The audits of the α sweep: (run, spec) pairs among ``configs`` (`alpha_sweep`).

    The shallow dense networks of the penalty families `audit_families` ("slope", "eq2";
    `ALPHA_FAMILIES`) at the targets `audit_alphas`, each family's unregularized twin (the
    network without penalty at the family's batch size) first, for the seeds `audit_seeds`.
    By default the eq. 2 networks at α* = 1 (the earlier chapters' target) and at every
    target 2–5, where the one-step FGSM is about as strong as PGD-40
    (`alpha_analysis.one_step_gaps`), a symptom of gradient masking that only attacks
    beyond the gradient's can settle. Each is attacked at `audit_eps` on `audit_images`
    fixed random test images by the ensemble (`audit_steps` iterations of APGD and FAB,
    `audit_queries` queries of Square).
    """
    families = tuple(audit_families)
    check_field(bool(families) and set(families) <= set(ALPHA_FAMILIES.values()),
                "audit_families", f"a non-empty subset of {sorted(ALPHA_FAMILIES.values())}",
                audit_families)
    regularizers = {r for r, fam in ALPHA_FAMILIES.items() if fam in families}
    run_seeds = sorted({c.seed for c in configs if alpha_setting(c) == "shallow"})
    check_field(bool(audit_seeds) and set(audit_seeds) <= set(run_seeds), "audit_seeds",
                f"seeds the grid runs for the shallow network: {run_seeds}", audit_seeds)
    shallow = [c for c in configs if alpha_setting(c) == "shallow" and c.seed in tuple(audit_seeds)]
    penalized = [c for c in shallow if c.regularizer in regularizers]
    run_targets = sorted({c.alpha for c in penalized})
    check_field(bool(audit_alphas) and set(map(float, audit_alphas)) <= set(run_targets),
                "audit_alphas", f"targets the grid runs for {', '.join(families)}: {run_targets}",
                audit_alphas)
    chosen = [c for c in penalized if c.alpha in set(map(float, audit_alphas))]
    batches = {c.batch_size for c in chosen}
    twins = [c for c in shallow if c.method.plain and c.batch_size in batches]
    spec = AuditSpec(eps=tuple(audit_eps), images=audit_images, steps=audit_steps,
                     n_queries=audit_queries)
    return [(c, spec) for c in twins + chosen]


def yardstick(seeds: Sequence[int] = (0, 1, 2), epochs: int = 50, adv_eps: float = 0.1,
              adv_steps: int = 7, adv_step_size: float = 0.025, **shallow_params
              ) -> list[RunConfig]:
    """The audit's yardstick: the shallow chapter's network (no batch norm) trained by PGD
    adversarial training (Madry et al. 2018) at L∞ radius `adv_eps` with `adv_steps` PGD
    steps of `adv_step_size` per batch (a random start in the ball, then 7 × 0.025 =
    1.75 ε of travel by default), for `epochs` epochs, one run per seed.

    `shallow_params` are `shallow`'s (width, batch size, optimizer, data subsets,
    evaluation grids): the yardstick is trained and evaluated exactly like the shallow
    chapter's vanilla network without batch norm but for its training inputs, and for its
    attack-strength check, which runs on the "first" images of the PGD subset unless
    `strength_sampling` says otherwise (its stored runs were evaluated so, and each would
    be retrained to evaluate it anew: 20-45 CPU-min per seed).
    """
    shallow_params = {"strength_sampling": "first", **shallow_params, "seeds": (0,),
                      "text_lr_check": ()}
    base = next(c for c in shallow(**shallow_params) if not c.batch_norm and c.method.plain)
    return [base.replace(regularizer="adversarial", adv_eps=float(adv_eps), adv_steps=adv_steps,
                         adv_step_size=float(adv_step_size), epochs=epochs, seed=s)
            for s in _seeds(seeds)]


def audit(shallow_seeds: Sequence[int] = (0,), yardstick_seeds: Sequence[int] = (0, 1, 2),
          yardstick_audited: Sequence[int] = (0,), yardstick_epochs: int = 50,
          with_local_learning: bool = True,
          audit_eps: Sequence[float] = (0.05, 0.1), audit_images: int = 1000,
          audit_steps: int = 100, audit_queries: int = 5000,
          shallow_params: dict | None = None) -> list[tuple[RunConfig, AuditSpec]]:
    """The audit chapter's audits: (run, spec) pairs, every run attacked by the same spec.

    - The shallow chapter (`shallow`, with `shallow_params`): vanilla and SpecReg at every
      β, with and without batch norm, for the seeds `shallow_seeds` (the text's
      learning-rate check aside);
    - the yardstick (`yardstick`): PGD adversarial training, `yardstick_epochs` epochs,
      the seeds `yardstick_audited` of its `yardstick_seeds` (`audit_runs` holds them all:
      the chapter tables every seed's own evaluation);
    - with `with_local_learning`, the local-learning chapter's own audits
      (`local_learning_audits` at its defaults, which use the same spec by default).

    The spec: the ensemble of `audits.ATTACKS` at `audit_eps` on `audit_images` fixed random
    test images, `audit_steps` APGD/FAB iterations and `audit_queries` Square queries
    (AutoAttack's budgets by default).
    """
    spec = AuditSpec(eps=tuple(audit_eps), images=audit_images, steps=audit_steps,
                     n_queries=audit_queries)
    check_field(set(_seeds(yardstick_audited)) <= set(_seeds(yardstick_seeds)),
                "yardstick_audited", f"seeds among yardstick_seeds {tuple(yardstick_seeds)}",
                yardstick_audited)
    shallow_runs, yardstick_runs = _audit_runs(shallow_seeds, yardstick_seeds,
                                               yardstick_epochs, shallow_params)
    runs = shallow_runs + [c for c in yardstick_runs if c.seed in set(yardstick_audited)]
    pairs = [(c, spec) for c in runs]
    if with_local_learning:
        pairs += [p for p in local_learning_audits(local_learning())
                  if p[0] not in runs]
    return pairs


def _audit_runs(shallow_seeds: Sequence[int], yardstick_seeds: Sequence[int],
                yardstick_epochs: int, shallow_params: dict | None
                ) -> tuple[list[RunConfig], list[RunConfig]]:
    """The shallow networks and the yardstick runs of `audit`'s parameters."""
    params = dict(shallow_params or {})
    for name in ("seeds", "text_lr_check"):
        check_field(name not in params, "shallow_params",
                    f"shallow's parameters other than {name!r} (use shallow_seeds)", params)
    runs = shallow(seeds=shallow_seeds, text_lr_check=(), **params)
    return runs, yardstick(seeds=yardstick_seeds, epochs=yardstick_epochs,
                           **{k: v for k, v in params.items() if k != "epochs"})


def audit_runs(**params) -> list[RunConfig]:
    """The runs the audit chapter needs stored: `audit`'s runs and every yardstick seed,
    each once, in order."""
    bound = inspect.signature(audit).bind(**params)
    bound.apply_defaults()
    a = bound.arguments
    audited = [c for c, _ in audit(**params)]
    _, yardstick_runs = _audit_runs(a["shallow_seeds"], a["yardstick_seeds"],
                                    a["yardstick_epochs"], a["shallow_params"])
    return list(dict.fromkeys([*audited, *yardstick_runs]))


audit_runs.__signature__ = inspect.signature(audit).replace(return_annotation=list[RunConfig])


def audit_chapter_audits(configs: Sequence[RunConfig], /, **params
                         ) -> list[tuple[RunConfig, AuditSpec]]:
    """`CHAPTER_AUDITS` entry of the audit chapter: `audit(**params)` (its grid, `audit_runs`,
    is made of the audited runs)."""
    return audit(**params)


#: Each chapter's audits, by chapter name: f(grid configs, **chapter parameters).
CHAPTER_AUDITS = {"local_learning": local_learning_audits, "audit": audit_chapter_audits,
                  "alpha_sweep": alpha_sweep_audits}

#: Every chapter's grid, by chapter name (used by the command line).
CHAPTER_GRIDS = {"shallow": shallow, "deep": deep, "alpha_sweep": alpha_sweep,
                 "local_learning": local_learning, "audit": audit_runs}
