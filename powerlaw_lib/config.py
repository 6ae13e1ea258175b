"""`RunConfig`: everything that defines one training-and-evaluation run.

A run is described by one frozen dataclass. Its identity is a hash of its canonical JSON
(`RunConfig.key`), which keys its result in the `ResultStore`. Every field is validated on
construction: a bad value raises one `ValueError` naming the field and the allowed range.

Defaults are the shallow experiment of Nassar et al. 2020, §4.1 (784-2000-10, tanh, batch
norm after the activation, Adam lr 1e-4, batch 3000 = 1.5 x the hidden width, 50 epochs as
in the authors' code) without a regularizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from . import methods
from .validation import check_field as _check, is_int as _is_int

#: Perturbation grid of Nassar et al. 2020, Fig. 2 (L∞, pixel values in [0, 1]): 0, 0.02, ...,
#: 0.2, plus 0.05, one of the two ε at which the chapters tabulate robust accuracy.
EPS_GRID: tuple[float, ...] = tuple(sorted({round(0.02 * i, 2) for i in range(11)} | {0.05}))
#: White-noise standard deviations (Nassar et al. 2020, appendix), pixel units.
NOISE_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

DATASETS = {  # name -> (channels, height, width, n_classes)
    "mnist": (1, 28, 28, 10),
    "fashion-mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
}
#: Training images per data set as `data.load` returns them (before any `train_subset`);
#: CIFAR-10: the first 40,000, its last 10,000 training images being the validation set.
TRAIN_SIZES = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 40_000}
ARCHS = ("mlp", "cnn", "kh")
ACTIVATIONS = ("tanh", "relu", "sigmoid")
OPTIMIZERS = ("adam", "amsgrad")
PRECISIONS = ("fp32", "bf16")
CNN_CHANNELS = (16, 32)


@dataclass(frozen=True)
class RunConfig:
    """One run: data, model, regularizer, optimisation and evaluation settings."""

    # --- data -----------------------------------------------------------------------------
    dataset: str = "mnist"                 # "mnist" | "fashion-mnist" | "cifar10"
    train_subset: int | None = None        # None: whole training set; n: fixed random subset
    test_subset: int | None = None         # None: whole test set; n: fixed random subset
    # --- model ----------------------------------------------------------------------------
    arch: str = "mlp"                      # "mlp" | "cnn" (16/32 conv + FC 1000, Nassar §4.2)
                                           # | "kh" (Krotov & Hopfield 2019: a hidden layer
                                           # learned by the local rule, then a readout)
    hidden: tuple[int, ...] = (2000,)      # MLP hidden widths; CNN: (width of its FC layer,);
                                           # kh: (number of hidden units,)
    activation: str = "tanh"               # "tanh" | "relu" | "sigmoid"
    batch_norm: bool = True                # MLP: BatchNorm1d after each hidden activation
    whiten_after: int | None = None        # 1-based hidden layer followed by a Whitening layer
    # --- regularizer ----------------------------------------------------------------------
    regularizer: str = "none"              # a method of the registry (`methods.names()`):
                                           # "none" | "spectral" | "slope" | "slope-mse" |
                                           # "jacobian" | "adversarial"
    reg_layers: tuple[int, ...] = ()       # 1-based hidden layers regularized (spectral, slope*)
    alpha: float = 1.0                     # target exponent: γ_n ∝ n^-α
    layer_alphas: tuple[float, ...] = ()   # spectral: one α per entry of reg_layers (overrides α)
    tau: int = 10                          # first regularized rank (Nassar eq. 2)
    beta: float = 1.0                      # penalty weight (β; β_j for "jacobian")
    slope_ranks: tuple[int, int] = (6, 50)  # ranks of the Gerum et al. slope fit
    slope_method: str = "subspace"         # batch spectrum of the slope fit: "subspace"
                                           # (top eigenpairs, warm-started) | "exact" (eigvalsh)
    jacobian_projections: int = 1          # random projections per sample (Hoffman et al.)
    adv_eps: float = 0.1                   # adversarial: L∞ radius of the training attack
    adv_steps: int = 7                     # adversarial: PGD steps per batch
    adv_step_size: float = 0.025           # adversarial: PGD step (2.5 ε / steps, Madry)
    # --- local learning (arch "kh" only; `local_learning`, Krotov & Hopfield 2019) ---------
    local_epochs: int = 30                 # epochs of the local rule (the readout's: `epochs`)
    local_lr: float = 0.04                 # ε0, annealed linearly to 0 (K&H: 0.04 MNIST)
    local_batch_size: int = 100            # minibatch of the local rule (K&H: 100)
    local_p: float = 3.0                   # order p of the metric (K&H: 3)
    local_k: int = 7                       # rank of the anti-Hebbian unit (K&H: 7 MNIST, 2 CIFAR)
    local_delta: float = 0.4               # anti-Hebbian strength Δ (K&H: 0.4)
    readout_power: float = 4.5             # n of the readout's h = relu(I)^n (K&H: 4.5)
    input_norm: float = 3.0                # inputs divided by their own L^input_norm norm
                                           # (Holzhausen et al.'s code: L3)
    # --- optimisation (the readout's, for arch "kh") --------------------------------------
    optimizer: str = "adam"                # "adam" | "amsgrad"
    lr: float = 1e-4
    batch_size: int = 3000                 # > every eq.-2-regularized / whitened width
    epochs: int = 50
    seed: int = 0                          # model init, batch order, projections
    precision: str = "fp32"                # "fp32" | "bf16" (autocast for network + projection)
    # --- evaluation -----------------------------------------------------------------------
    fgsm_eps: tuple[float, ...] = EPS_GRID
    pgd_eps: tuple[float, ...] = EPS_GRID
    pgd_steps: int = 40
    pgd_step_size: float = 0.01
    pgd_subset: int | None = 2000          # fixed random test subset for PGD (same for all runs)
    noise_sigma: tuple[float, ...] = NOISE_GRID
    strength_eps: tuple[float, ...] = (0.05, 0.1)  # attack-strength check: PGD with restarts ...
    strength_restarts: int = 5             # ... this many restarts (first from x, others random)
    strength_steps: int = 100              # ... of this many steps each
    strength_subset: int | None = 500      # ... on this many images of the PGD subset
    strength_sampling: str = "random"      # ... "random": a fixed random sample of it;
                                           #     "first": its first images (results before 0.2)
    sensitivity_top: int = 8               # maps dλ_n/dx for n = 1..sensitivity_top (last layer)
    sensitivity_images: int = 2            # test images per map

    # ---------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        _coerce(self)
        _validate(self)

    # --- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists).

        A field added after results were first stored is left out while it holds the value
        those results implicitly had (`LEGACY_VALUES`), so their keys stay valid.
        """
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in LEGACY_VALUES and value == LEGACY_VALUES[f.name]:
                continue
            out[f.name] = _jsonable(value)
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON: the run's identity."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def training_dict(self) -> dict[str, Any]:
        """`to_dict` without the evaluation fields: what determines the trained weights."""
        return {k: v for k, v in self.to_dict().items() if k not in EVALUATION_FIELDS}

    @property
    def training_key(self) -> str:
        """16 hex digits identifying the trained model (the run's key minus evaluation)."""
        text = json.dumps(self.training_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"RunConfig: unknown field(s) {sorted(unknown)}")
        return cls(**{**LEGACY_VALUES, **d})

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    # --- derived ----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w, _ = DATASETS[self.dataset]
        return (c, h, w)

    @property
    def n_classes(self) -> int:
        return DATASETS[self.dataset][3]

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """Widths of the hidden representations h_1..h_D (flattened, channel-major)."""
        if self.arch in ("mlp", "kh"):
            return self.hidden
        c, size, _ = self.input_shape
        widths = []
        for ch in CNN_CHANNELS:  # conv3x3 (no padding) -> maxpool2
            size = (size - 2) // 2
            widths.append(ch * size * size)
        return (*widths, self.hidden[0])

    @property
    def history_length(self) -> int:
        """Rows in a finished run's training history: one per epoch (arch "kh": the local
        rule's epochs, then the readout's)."""
        return self.epochs + (self.local_epochs if self.arch == "kh" else 0)

    @property
    def method(self) -> methods.Method:
        """The registered method named by `regularizer`."""
        return methods.get(self.regularizer)

    @property
    def regularized_layers(self) -> tuple[int, ...]:
        return self.reg_layers if self.method.layered else ()

    @property
    def alphas(self) -> dict[int, float]:
        """Target exponent of each regularized layer: `layer_alphas` when given, else α."""
        layers = self.regularized_layers
        return dict(zip(layers, self.layer_alphas or (self.alpha,) * len(layers)))

    @property
    def label(self) -> str:
        """Short human-readable description, e.g.
        'mnist mlp2000-bn SpecReg layers=[1] α=1 τ=10 β=2 seed 0'."""
        return f"{self.dataset} {self.arch_label} {self.method.describe(self)} seed {self.seed}"

    @property
    def arch_label(self) -> str:
        """The network in a few characters, e.g. 'mlp1000x1000x1000-wh2', 'cnn'."""
        if self.arch == "kh":
            return (f"kh{self.hidden[0]}-p{self.local_p:g}-k{self.local_k}"
                    f"-n{self.readout_power:g}")
        arch = "cnn" if self.arch == "cnn" else "mlp" + "x".join(map(str, self.hidden))
        arch += "-bn" if self.batch_norm and self.arch == "mlp" else ""
        return arch + (f"-wh{self.whiten_after}" if self.whiten_after else "")


def varying_fields(configs: list[RunConfig]) -> list[str]:
    """Names of the fields whose value differs between some of `configs`, in field order."""
    if not configs:
        return []
    first = configs[0]
    return [f.name for f in fields(RunConfig)
            if any(getattr(c, f.name) != getattr(first, f.name) for c in configs[1:])]


def describe(config: RunConfig, names: list[str]) -> str:
    """`name=value` for each of `names` (e.g. `varying_fields` of a grid), space-separated."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        if isinstance(v, tuple):
            return "(" + ",".join(fmt(x) for x in v) + ")"
        return str(v)
    return " ".join(f"{n}={fmt(getattr(config, n))}" for n in names)


# ------------------------------------------------------------------------------------------
#: Fields added after results were first stored, with the value those results implicitly
#: had. `to_dict` omits a field holding its legacy value and `from_dict` fills it in, so a
#: stored result keeps its key; any other value enters the key as usual.
LEGACY_VALUES: dict[str, Any] = {"strength_sampling": "first", "layer_alphas": (),
                                 "slope_method": "subspace", "local_epochs": 30,
                                 "local_lr": 0.04, "local_batch_size": 100, "local_p": 3.0,
                                 "local_k": 7, "local_delta": 0.4, "readout_power": 4.5,
                                 "input_norm": 3.0, "adv_eps": 0.1, "adv_steps": 7,
                                 "adv_step_size": 0.025}
#: Fields only the local-learning networks (arch "kh") read; any other arch keeps them at
#: their defaults.
LOCAL_FIELDS = ("local_epochs", "local_lr", "local_batch_size", "local_p", "local_k",
                "local_delta", "readout_power", "input_norm")
STRENGTH_SAMPLINGS = ("random", "first")
#: Fields that say how a trained model is evaluated, not how it is trained. `test_subset`
#: is one: it changes the per-epoch test accuracy recorded in the history, not the weights.
EVALUATION_FIELDS = frozenset({
    "test_subset", "fgsm_eps", "pgd_eps", "pgd_steps", "pgd_step_size", "pgd_subset",
    "noise_sigma", "strength_eps", "strength_restarts", "strength_steps", "strength_subset",
    "strength_sampling", "sensitivity_top", "sensitivity_images"})

_FLOAT_FIELDS = ("alpha", "beta", "lr", "pgd_step_size", "local_lr", "local_p", "local_delta",
                 "readout_power", "input_norm", "adv_eps", "adv_step_size")
_FLOAT_TUPLES = ("fgsm_eps", "pgd_eps", "noise_sigma", "strength_eps", "layer_alphas")
_INT_TUPLES = ("hidden", "reg_layers", "slope_ranks")


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _set(cfg: RunConfig, name: str, value: Any) -> None:
    object.__setattr__(cfg, name, value)


def _coerce(cfg: RunConfig) -> None:
    """Normalize types so that equal configs hash equally (1 vs 1.0, list vs tuple)."""
    for name in _FLOAT_FIELDS:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"RunConfig.{name} must be a finite number, got {v!r}")
        _set(cfg, name, float(v))
    for name in _FLOAT_TUPLES:
        v = getattr(cfg, name)
        try:
            _set(cfg, name, tuple(float(x) for x in v))
        except (TypeError, ValueError):
            raise ValueError(f"RunConfig.{name} must be a sequence of numbers, got {v!r}") from None
    for name in _INT_TUPLES:
        v = getattr(cfg, name)
        try:
            items = tuple(v)
        except TypeError:
            raise ValueError(f"RunConfig.{name} must be a sequence of integers, got {v!r}") from None
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            raise ValueError(f"RunConfig.{name} must contain integers, got {v!r}")
        _set(cfg, name, items)


#: Every field's default value.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunConfig)}


def _validate_method(c: RunConfig) -> None:
    """The method's own checks, and every method field it does not read at its default."""
    _check(c.regularizer in methods.names(), "regularizer", f"one of {methods.names()}",
           c.regularizer)
    method = c.method
    for name in methods.METHOD_FIELDS:
        if name not in method.fields:
            _check(getattr(c, name) == DEFAULTS[name], name,
                   f"{DEFAULTS[name]!r} (the default) when regularizer={c.regularizer!r}, "
                   f"which does not read it", getattr(c, name))
    _check(c.alpha > 0, "alpha", "alpha > 0", c.alpha)
    _check(c.beta >= 0, "beta", "beta >= 0", c.beta)
    method.validate(c)


def _validate_local(c: RunConfig) -> None:
    """The local-learning fields: in range for arch "kh", at their defaults otherwise."""
    if c.arch != "kh":
        for name in LOCAL_FIELDS:
            _check(getattr(c, name) == DEFAULTS[name], name,
                   f"{DEFAULTS[name]!r} (the default) when arch={c.arch!r}, which does not "
                   f"read it", getattr(c, name))
        return
    _check(len(c.hidden) == 1, "hidden", "(units,) for arch 'kh', e.g. (2000,)", c.hidden)
    _check(not c.batch_norm, "batch_norm", "False for arch 'kh'", c.batch_norm)
    _check(c.whiten_after is None, "whiten_after", "None for arch 'kh'", c.whiten_after)
    _check(c.activation == DEFAULTS["activation"], "activation",
           f"{DEFAULTS['activation']!r} (the default) for arch 'kh', whose hidden units are "
           f"relu(I)^readout_power", c.activation)
    if c.regularizer in methods.names():  # unknown names are reported by _validate_method
        plain = [m.name for m in methods.all_methods() if m.plain]
        _check(c.method.plain, "regularizer", f"one of {plain} for arch 'kh' (its hidden layer "
               "is not trained by backpropagation)", c.regularizer)
    _check(c.optimizer == "adam", "optimizer", "'adam' for arch 'kh' (the readout's)",
           c.optimizer)
    _check(c.precision == "fp32", "precision", "'fp32' for arch 'kh'", c.precision)
    _check(_is_int(c.local_epochs) and c.local_epochs >= 1, "local_epochs", "an integer >= 1",
           c.local_epochs)
    _check(0 < c.local_lr <= 1, "local_lr", "0 < local_lr <= 1", c.local_lr)
    _check(_is_int(c.local_batch_size) and c.local_batch_size >= 1, "local_batch_size",
           "an integer >= 1", c.local_batch_size)
    _check(c.local_p >= 2, "local_p", "a number >= 2", c.local_p)
    _check(_is_int(c.local_k) and 2 <= c.local_k <= c.hidden[0], "local_k",
           f"an integer in 2..{c.hidden[0]} (the number of hidden units)", c.local_k)
    _check(c.local_delta >= 0, "local_delta", "a number >= 0", c.local_delta)
    _check(c.readout_power >= 1, "readout_power", "a number >= 1", c.readout_power)
    _check(c.input_norm >= 1, "input_norm", "a number >= 1 (the order of the norm)",
           c.input_norm)


def _validate(c: RunConfig) -> None:
    _check(c.dataset in DATASETS, "dataset", f"one of {sorted(DATASETS)}", c.dataset)
    for name in ("train_subset", "test_subset", "pgd_subset", "strength_subset"):
        v = getattr(c, name)
        _check(v is None or (_is_int(v) and v >= 1), name, "None or an integer >= 1", v)
    _check(c.arch in ARCHS, "arch", f"one of {ARCHS}", c.arch)
    _check(len(c.hidden) >= 1 and all(w >= 1 for w in c.hidden), "hidden",
           "a non-empty sequence of widths >= 1", c.hidden)
    _check(c.activation in ACTIVATIONS, "activation", f"one of {ACTIVATIONS}", c.activation)
    _check(isinstance(c.batch_norm, bool), "batch_norm", "True or False", c.batch_norm)
    depth = len(c.hidden_widths)
    _check(c.whiten_after is None or (_is_int(c.whiten_after) and 1 <= c.whiten_after <= depth),
           "whiten_after", f"None or a hidden layer index in 1..{depth}", c.whiten_after)
    if c.arch == "cnn":
        _check(len(c.hidden) == 1, "hidden", "(fc_width,) for the CNN, e.g. (1000,)", c.hidden)
        _check(c.whiten_after in (None, len(CNN_CHANNELS)), "whiten_after",
               f"None or {len(CNN_CHANNELS)} (the last conv layer) for the CNN", c.whiten_after)
        _check(not c.batch_norm, "batch_norm", "False for the CNN (Nassar et al. use none)",
               c.batch_norm)
    _validate_local(c)
    _validate_method(c)
    widths = c.hidden_widths
    _check(c.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}", c.optimizer)
    _check(0 < c.lr <= 1, "lr", "0 < lr <= 1", c.lr)
    _check(_is_int(c.epochs) and c.epochs >= 1, "epochs", "an integer >= 1", c.epochs)
    _check(_is_int(c.seed) and c.seed >= 0, "seed", "an integer >= 0", c.seed)
    _check(c.precision in PRECISIONS, "precision", f"one of {PRECISIONS}", c.precision)
    _check(_is_int(c.batch_size) and c.batch_size >= 2, "batch_size", "an integer >= 2",
           c.batch_size)
    # What the method needs of the batch (eq. 2: wider than each regularized layer; the
    # slope fit: a spectrum without zeros up to its last rank), and whitening (Cholesky of
    # the whitened layer's batch covariance) a batch wider than that layer.
    needs = c.method.batch_needs(c)
    if c.whiten_after:
        needs.append((widths[c.whiten_after - 1], f"the width of whitened layer "
                                                  f"{c.whiten_after}"))
    for need, why in needs:
        _check(c.batch_size > need, "batch_size", f"an integer > {need}, {why}", c.batch_size)
    if c.train_subset is not None:
        _check(c.train_subset >= c.batch_size, "train_subset",
               f"None or >= batch_size ({c.batch_size})", c.train_subset)

    for name in ("fgsm_eps", "pgd_eps", "strength_eps"):
        grid = getattr(c, name)
        _check(all(0 <= e <= 1 for e in grid) and list(grid) == sorted(set(grid)), name,
               "increasing distinct values in [0, 1]", grid)
    _check(all(s >= 0 for s in c.noise_sigma) and list(c.noise_sigma) == sorted(set(c.noise_sigma)),
           "noise_sigma", "increasing distinct values >= 0", c.noise_sigma)
    _check(_is_int(c.pgd_steps) and c.pgd_steps >= 1, "pgd_steps", "an integer >= 1", c.pgd_steps)
    _check(0 < c.pgd_step_size <= 1, "pgd_step_size", "0 < step <= 1", c.pgd_step_size)
    _check(_is_int(c.strength_restarts) and c.strength_restarts >= 1, "strength_restarts",
           "an integer >= 1", c.strength_restarts)
    _check(c.strength_sampling in STRENGTH_SAMPLINGS, "strength_sampling",
           f"one of {STRENGTH_SAMPLINGS}", c.strength_sampling)
    _check(_is_int(c.strength_steps) and c.strength_steps >= 1, "strength_steps",
           "an integer >= 1", c.strength_steps)
    _check(_is_int(c.sensitivity_top) and 0 <= c.sensitivity_top <= widths[-1],
           "sensitivity_top", f"an integer in 0..{widths[-1]}", c.sensitivity_top)
    _check(_is_int(c.sensitivity_images) and c.sensitivity_images >= 0, "sensitivity_images",
           "an integer >= 0", c.sensitivity_images)
