"""What a training method is: its declaration (`Method`) and the penalty it adds (`Penalty`).

A method declares, in one place, everything the rest of the library asks about it: its
name (the value of `RunConfig.regularizer`, used in configs, the store and on the command
line), its display label (tables, legends, run labels), its colour, the `RunConfig` fields it
reads and their validation, what it needs of the batch, and a constructor of its penalty.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..validation import check_field

if TYPE_CHECKING:  # RunConfig is a layer above: methods are declared before configs exist
    from ..config import RunConfig

#: `RunConfig` fields that belong to some method. A config leaves every one its own method
#: does not read at its default, so a method's identity is the fields it reads.
METHOD_FIELDS = ("reg_layers", "alpha", "layer_alphas", "tau", "beta", "slope_ranks",
                 "slope_method", "jacobian_projections", "adv_eps", "adv_steps", "adv_step_size")
#: How a method field is shown in labels and method keys.
FIELD_SYMBOLS = {"beta": "β", "alpha": "α", "layer_alphas": "α_l", "tau": "τ",
                 "reg_layers": "layers", "slope_ranks": "ranks", "slope_method": "spectrum",
                 "jacobian_projections": "projections", "adv_eps": "ε", "adv_steps": "steps",
                 "adv_step_size": "η"}


def format_value(value: Any) -> str:
    """Compact, unambiguous text of a config value: floats in shortest round-trip form."""
    if isinstance(value, float):
        return repr(value).removesuffix(".0") if value == int(value) else repr(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


class Penalty:
    """The term a method adds to the cross-entropy, for one training run.

    ``penalty(model, x, y, hidden)`` returns a differentiable scalar for the batch
    ``x [B, C, H, W]``, ``y [B]`` whose hidden representations are ``hidden`` (list, layer
    l at index l - 1, each ``[B, N_l]``, with graph). ``start_epoch(model, x_train,
    generator)`` runs at the start of every epoch, before its first step: the generator is
    the epoch's (it has drawn the batch order), for penalties that draw random numbers.
    ``training_inputs(model, x, y)`` gives the inputs the network trains on for the batch
    (``x`` itself by default; adversarial training replaces it).

    `adds_term`: the penalty is not identically zero (a step without a term may run in
    chunks, `training.step_chunk`).
    """

    adds_term: bool = False

    def start_epoch(self, model: nn.Module, x_train: torch.Tensor,
                    generator: torch.Generator) -> None:
        """Per-epoch refresh; nothing by default."""

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch ``[B, C, H, W]`` the loss is computed on; ``x`` by default."""
        return x

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 hidden: list[torch.Tensor]) -> torch.Tensor:
        return torch.zeros(())


class Method:
    """Declaration of a training method. Subclass, set the class attributes, register.

    Attributes
    ----------
    name : the `RunConfig.regularizer` value ("none", "spectral", ...).
    label : display name in tables, legends and run labels ("vanilla", "SpecReg", ...).
    color : hex colour in every figure; marker: its matplotlib marker.
    fields : the `RunConfig` fields of `METHOD_FIELDS` it reads (the others stay default),
        in the order labels show them.
    shown : fields its labels always show (the others only when not at their default).
    layered : it regularizes the hidden layers listed in `reg_layers` (at least one).
    shades_by_beta : figures shade its colour by β (several strengths side by side).
    plain : it changes nothing in training (no term, no other inputs): the only kind of
        method a network trained without backpropagation (arch "kh") can declare.
    reference : the paper and equation it implements.
    """

    name: str = ""
    label: str = ""
    color: str = "#000000"
    marker: str = "o"
    fields: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    layered: bool = False
    shades_by_beta: bool = False
    plain: bool = False
    reference: str = ""

    def validate(self, config: "RunConfig") -> None:
        """Method-specific checks of the fields it reads; raise via `validation.check_field`."""

    def batch_needs(self, config: "RunConfig") -> list[tuple[int, str]]:
        """[(n, why)]: the training batch must be larger than each n, for the reason given."""
        return []

    def describe(self, config: "RunConfig", fields: tuple[str, ...] | None = None) -> str:
        """Label plus `symbol=value` for `fields`; by default for the fields in `shown` and
        every other field it reads that is not at its default (e.g. 'SpecReg β=2 α=1
        layers=[3]'). Distinct settings of the method give distinct texts."""
        if fields is None:
            defaults = {f.name: f.default for f in dataclasses.fields(type(config))}
            fields = tuple(name for name in self.fields if name in self.shown
                           or getattr(config, name) != defaults[name])
        parts = [self.label]
        for name in fields:
            if getattr(config, name) == ():
                continue  # an empty tuple (no per-layer α) reads as its absence
            parts.append(f"{FIELD_SYMBOLS.get(name, name)}={format_value(getattr(config, name))}")
        return " ".join(parts)

    def penalty(self, config: "RunConfig") -> Penalty:
        """A fresh penalty for one run of `config`."""
        return Penalty()

    def __repr__(self) -> str:
        return f"<method {self.name!r} ({self.label})>"


def check_layers(config: "RunConfig") -> None:
    """`reg_layers`: distinct hidden-layer indices in 1..depth, at least one."""
    depth = len(config.hidden_widths)
    layers = config.reg_layers
    check_field(len(layers) >= 1 and all(1 <= l <= depth for l in layers)
                and len(set(layers)) == len(layers), "reg_layers",
                f"distinct hidden layer indices in 1..{depth} (at least one)", layers)

