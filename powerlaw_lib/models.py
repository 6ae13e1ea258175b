"""Network architectures of Nassar et al. 2020 (§4) and Gerum et al. 2022, with a batch-whitening layer.

Every model maps NCHW images with values in ``[0, 1]`` to logits ``[B, C]`` and can also
return its hidden representations, each flattened to ``[B, width_l]``: these are the
tensors whose eigenspectra the regularizers shape and the analysis chapters measure.

Architectures
-------------
- :class:`MLP` -- fully connected network. Shallow: ``(784, 2000, 10)`` with tanh and batch
  norm after the activation (Nassar et al. 2020, §4.1); deep: ``(784, 1000, 1000, 1000, 10)``
  (§4.2-4.3 and Gerum et al. 2022). Each hidden block is Linear -> activation ->
  (BatchNorm1d); the hidden representation is the block output as passed on (after batch
  norm when present), as in the authors' code, which records and regularizes that tensor.
- :class:`CNN` -- conv3x3(C->16) -> act -> maxpool2 -> conv3x3(16->32) -> act -> maxpool2 ->
  FC -> act -> FC (no padding), computed as conv -> maxpool -> act (the same function: the
  activations are monotonic) in the channels-last memory format. Hidden widths 2704, 800,
  1000 on MNIST (28x28) and 3600, 1152, 1000 on CIFAR-10 (32x32); conv outputs are
  flattened channel-major.
- :class:`Whitening` -- x̃ = L⁻¹(x − μ_B) with L the Cholesky factor of the batch
  covariance (Nassar et al. 2020, §4.2, "Vanilla-Wh"), inserted after a hidden layer.

Use :func:`build_model` to construct a model from configuration fields.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .validation import check_int as _check_positive_int, is_int as _is_int

__all__ = ["CNN", "MLP", "Whitening", "build_model", "make_activation", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- validation


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` in ``ACTIVATIONS`` ("tanh", "relu", "sigmoid")."""
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name.lower()]()


# ----------------------------------------------------------------------------- whitening


class Whitening(nn.Module):
    """Batch whitening x̃ = L⁻¹(x − μ_B), Nassar et al. 2020, §4.2 ("Vanilla-Wh").

    L is the lower Cholesky factor of the batch covariance Σ_B + eps·I, with Σ_B centred and
    divided by B − 1, so the output has (up to eps) identity batch covariance: a flat
    spectrum. Gradients flow through the mean, the covariance and the Cholesky factor.

    In training mode every batch is whitened with its own statistics, as in the paper (so
    a training batch must hold more samples than ``width``). Evaluation must not depend on
    how the test set is batched, so :meth:`freeze` stores statistics of a reference set
    (the training set, see ``training.freeze_whitening``); once frozen, evaluation mode
    whitens every sample with them: x̃ = L_ref⁻¹(x − μ_ref), one sample at a time, exactly.
    Before any freeze, evaluation mode falls back to the batch statistics. The frozen
    statistics are buffers: they travel with ``state_dict`` (checkpoints, the model cache).

    Computation runs in float32 when the input is float16/bfloat16 (e.g. under autocast,
    which is disabled inside), otherwise in the input dtype; the output has the input dtype.

    Parameters
    ----------
    width : int
        Number of features N of the input ``[B, N]``.
    eps : float
        Ridge added to the covariance diagonal before the Cholesky factorisation (paper: 1e-5).
    """

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.width = _check_positive_int("width", width)
        eps = float(eps)
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        self.eps = eps
        self.register_buffer("frozen_mean", torch.zeros(self.width))  # [N] μ_ref
        self.register_buffer("frozen_lower", torch.zeros(self.width, self.width))  # [N, N] L_ref
        self.register_buffer("is_frozen", torch.zeros((), dtype=torch.bool))

    def extra_repr(self) -> str:
        return f"width={self.width}, eps={self.eps}, frozen={bool(self.is_frozen)}"

    @torch.no_grad()
    def freeze(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """Whiten with these reference statistics in evaluation mode from now on.

        mean ``[N]`` and covariance ``[N, N]`` (divided by n − 1) of the layer's input over a
        reference set; eps·I is added before the Cholesky factorisation, as for a batch.
        """
        if mean.shape != (self.width,) or cov.shape != (self.width, self.width):
            raise ValueError(f"freeze expects mean [{self.width}] and covariance "
                             f"[{self.width}, {self.width}], got {tuple(mean.shape)} and "
                             f"{tuple(cov.shape)}")
        cov = cov.to(torch.float64)
        cov = 0.5 * (cov + cov.mT) + self.eps * torch.eye(self.width, dtype=torch.float64)
        self.frozen_lower.copy_(torch.linalg.cholesky(cov))
        self.frozen_mean.copy_(mean)
        self.is_frozen.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.width:
            raise ValueError(f"Whitening expects input of shape [B, {self.width}], got {tuple(x.shape)}")
        if not self.training and bool(self.is_frozen):
            with torch.autocast(device_type=x.device.type, enabled=False):
                lower = self.frozen_lower.to(x.dtype if x.dtype not in _LOW_PRECISION
                                             else torch.float32)
                centred = x.to(lower.dtype) - self.frozen_mean.to(lower.dtype)  # [B, N]
                white = torch.linalg.solve_triangular(lower.mT, centred, upper=True, left=False)
            return white.to(x.dtype)
        batch = x.shape[0]
        if batch <= self.width:
            raise ValueError(
                f"Whitening needs batch size > width to factor the batch covariance: "
                f"batch size {batch} <= width {self.width}"
            )
        compute_dtype = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            xc = x.to(compute_dtype)
            centred = xc - xc.mean(dim=0, keepdim=True)  # [B, N]
            cov = centred.mT @ centred / (batch - 1)  # [N, N]
            cov = 0.5 * (cov + cov.mT)
            cov = cov + self.eps * torch.eye(self.width, dtype=compute_dtype, device=x.device)
            lower = torch.linalg.cholesky(cov)  # [N, N], Σ + eps I = L Lᵀ
            # rows of x̃ are L⁻¹(x_b − μ): solve x̃ Lᵀ = centred for x̃
            white = torch.linalg.solve_triangular(lower.mT, centred, upper=True, left=False)  # [B, N]
        return white.to(x.dtype)


# ----------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """Fully connected network (Nassar et al. 2020, §4.1-4.3; Gerum et al. 2022).

    Parameters
    ----------
    widths : sequence of int
        All layer widths including input and output, e.g. ``(784, 2000, 10)`` (shallow) or
        ``(784, 1000, 1000, 1000, 10)`` (deep). At least one hidden layer.
    activation : str
        "tanh" (the papers' choice), "relu" or "sigmoid".
    batch_norm : bool
        Append BatchNorm1d AFTER the activation of every hidden block (§4.1 shallow net).
    whiten_after : int or None
        1-based index k of a hidden layer; a :class:`Whitening` of width ``widths[k]`` is
        applied to block k's output before block k+1 (§4.2: k = 2). The whitening output is
        not reported as a hidden representation.

    Notes
    -----
    Inputs of any shape ``[B, ...]`` are flattened to ``[B, widths[0]]``.
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "tanh",
        batch_norm: bool = False,
        whiten_after: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(widths, (str, bytes)) or len(widths) < 3:
            raise ValueError(
                f"widths must list input, >= 1 hidden and output widths (length >= 3), got {widths!r}"
            )
        widths = tuple(_check_positive_int("widths", w) for w in widths)
        n_hidden = len(widths) - 2
        if whiten_after is not None:
            if not _is_int(whiten_after) or not 1 <= whiten_after <= n_hidden:
                raise ValueError(
                    f"whiten_after must be None or a hidden-layer index in [1, {n_hidden}], got {whiten_after!r}"
                )
            whiten_after = int(whiten_after)
        make_activation(activation)  # validate once
        self.widths = widths
        self.whiten_after = whiten_after
        self.batch_norm = bool(batch_norm)

        blocks = []
        for fan_in, fan_out in zip(widths[:-2], widths[1:-1]):
            layers: list[nn.Module] = [nn.Linear(fan_in, fan_out), make_activation(activation)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(fan_out))  # after the activation (§4.1)
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.whitening = Whitening(widths[whiten_after]) if whiten_after is not None else None
        self.readout = nn.Linear(widths[-2], widths[-1])

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """Widths N_l of the hidden representations h_1 .. h_D."""
        return self.widths[1:-1]

    def _propagate(self, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = x.reshape(x.shape[0], -1)  # [B, widths[0]]
        if h.shape[1] != self.widths[0]:
            raise ValueError(f"input has {h.shape[1]} features per sample, the MLP expects {self.widths[0]}")
        hidden: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks, start=1):
            h = block(h)  # [B, N_index]
            if record:
                hidden.append(h)
            if index == self.whiten_after:
                h = self.whitening(h)
        return self.readout(h), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]``."""
        return self._propagate(x, record=False)[0]

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden representations ``[h_1 [B, N_1], ..., h_D [B, N_D]]``."""
        return self._propagate(x, record=True)


# ----------------------------------------------------------------------------- CNN


#: Images per forward/backward pass of a CNN training step without a penalty term
#: (`training.step_chunk`): a 6,000-image batch in one pass allocates 260 MB conv
#: temporaries per layer; passes of 1,000 measured fastest of 250 to 6,000 on a 2-core AMD
#: EPYC (about 1.1x one pass, a third of the memory).
CNN_STEP_CHUNK = 1000


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient in channels-last memory layout.

    The flatten after the last conv block (channel-major, so a copy of a channels-last
    tensor) returns its gradient in NCHW layout. Given that and a channels-last input,
    `max_pool2d`'s backward copies both to one layout (the 6,000 x 32 x 11 x 11 conv
    output included: about 7 % of a vanilla CNN step). Converting the small pooled gradient
    instead is exact (a layout change) and costs a 32 x 5 x 5 copy per image.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)  # [B, C, H, W], same strides

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.contiguous(memory_format=torch.channels_last)  # no copy if already so


class CNN(nn.Module):
    """Convolutional network of Nassar et al. 2020 (§4.2-4.3) and Gerum et al. 2022.

    conv3x3(in->c_1) -> act -> maxpool2 -> conv3x3(c_1->c_2) -> act -> maxpool2 -> flatten
    -> Linear(., hidden) -> act -> Linear(hidden, n_classes); no padding, no batch norm.
    The hidden representations are the pooled conv outputs flattened channel-major
    (torch's flatten of ``[B, C, H, W]``) and the FC hidden layer.

    Parameters
    ----------
    in_channels, image_size : int
        1 and 28 for MNIST / Fashion-MNIST, 3 and 32 for CIFAR-10 (square images).
    channels : sequence of int
        Output channels of the conv layers (paper: (16, 32)).
    hidden : int
        Width of the fully connected hidden layer (paper: 1000).
    n_classes : int
        Number of output logits.
    activation : str
        "tanh", "relu" or "sigmoid".
    whiten : bool
        Insert :class:`Whitening` on the flattened last conv output, before the FC layer
        (§4.2 "Vanilla-Wh"); that whitened tensor is not reported as a hidden representation.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        channels: Sequence[int] = (16, 32),
        hidden: int = 1000,
        n_classes: int = 10,
        activation: str = "tanh",
        whiten: bool = False,
    ) -> None:
        super().__init__()
        in_channels = _check_positive_int("in_channels", in_channels)
        image_size = _check_positive_int("image_size", image_size)
        if isinstance(channels, (str, bytes)) or len(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of integers >= 1, got {channels!r}")
        channels = tuple(_check_positive_int("channels", c) for c in channels)
        hidden = _check_positive_int("hidden", hidden)
        n_classes = _check_positive_int("n_classes", n_classes)
        make_activation(activation)

        conv_blocks = []
        widths = []
        size, fan_in = image_size, in_channels
        for fan_out in channels:
            size = (size - 2) // 2  # conv3x3 without padding, then maxpool 2
            if size < 1:
                raise ValueError(
                    f"image_size {image_size} is too small for {len(channels)} conv3x3+maxpool2 layers"
                )
            # max-pool BEFORE the activation: every activation here is monotonic increasing,
            # so pool(act(z)) = act(pool(z)) exactly, and the activation (forward and
            # backward) runs on a quarter of the values.
            conv_blocks.append(
                nn.Sequential(nn.Conv2d(fan_in, fan_out, kernel_size=3), nn.MaxPool2d(2), make_activation(activation))
            )
            widths.append(fan_out * size * size)
            fan_in = fan_out
        self.in_channels = in_channels
        self.image_size = image_size
        self.conv_blocks = nn.ModuleList(conv_blocks).to(memory_format=torch.channels_last)
        self.whitening = Whitening(widths[-1]) if whiten else None
        self.fc = nn.Sequential(nn.Linear(widths[-1], hidden), make_activation(activation))
        self.readout = nn.Linear(hidden, n_classes)
        self._hidden_widths = (*widths, hidden)
        #: Images per forward/backward pass of a training step (`training.step_chunk`):
        #: samples are independent unless a whitening layer couples them through its batch
        #: statistics.
        self.step_chunk = None if whiten else CNN_STEP_CHUNK

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """Widths of the hidden representations: flattened conv outputs, then the FC layer."""
        return self._hidden_widths

    def _propagate(self, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"CNN expects input [B, {self.in_channels}, {self.image_size}, {self.image_size}], "
                f"got {tuple(x.shape)}"
            )
        hidden: list[torch.Tensor] = []
        h = x.contiguous(memory_format=torch.channels_last)  # NHWC in memory: faster convs
        for block in self.conv_blocks:
            h = _ChannelsLastGrad.apply(block(h))  # [B, C_l, H_l, W_l], channels-last in memory
            if record:
                hidden.append(h.flatten(1))  # [B, C_l*H_l*W_l], channel-major (a copy)
        h = h.flatten(1)
        if self.whitening is not None:
            h = self.whitening(h)
        h = self.fc(h)  # [B, hidden]
        if record:
            hidden.append(h)
        return self.readout(h), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]``."""
        return self._propagate(x, record=False)[0]

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden representations ``[h_1, ..., h_D]``, each ``[B, N_l]``."""
        return self._propagate(x, record=True)


# ----------------------------------------------------------------------------- factory

_CNN_DEFAULT_HIDDEN = 1000


def build_model(
    arch: str,
    dataset_shape: tuple[int, int, int],
    n_classes: int,
    hidden: tuple[int, ...] = (),
    activation: str = "tanh",
    batch_norm: bool = False,
    whiten_after: int | None = None,
) -> nn.Module:
    """Build a model from configuration fields.

    Parameters
    ----------
    arch : str
        "mlp" or "cnn".
    dataset_shape : tuple of int
        Image shape ``(C, H, W)`` of the data set, e.g. ``(1, 28, 28)`` or ``(3, 32, 32)``.
    n_classes : int
        Number of classes (>= 2).
    hidden : tuple of int
        mlp: the hidden widths, e.g. ``(2000,)`` or ``(1000, 1000, 1000)`` (required).
        cnn: ``()`` for the paper's FC width 1000, or ``(k,)`` for FC width k.
    activation : str
        "tanh", "relu" or "sigmoid".
    batch_norm : bool
        mlp only: BatchNorm1d after each hidden activation. The CNN has no batch norm.
    whiten_after : int or None
        mlp: 1-based hidden-layer index to whiten after (Nassar et al. 2020: 2).
        cnn: None, or the index of the last conv layer (2) to whiten its flattened output.
    """
    if not isinstance(arch, str) or arch.lower() not in ("mlp", "cnn"):
        raise ValueError(f"arch must be 'mlp' or 'cnn', got {arch!r}")
    arch = arch.lower()
    if (
        not isinstance(dataset_shape, (tuple, list))
        or len(dataset_shape) != 3
        or any(not _is_int(d) or d < 1 for d in dataset_shape)
    ):
        raise ValueError(f"dataset_shape must be (C, H, W) with positive integers, got {dataset_shape!r}")
    channels, height, width = (int(d) for d in dataset_shape)
    if not _is_int(n_classes) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    hidden = () if hidden is None else hidden
    if not isinstance(hidden, (tuple, list)) or any(not _is_int(w) or w < 1 for w in hidden):
        raise ValueError(f"hidden must contain integers >= 1, got {hidden!r}")
    hidden = tuple(int(w) for w in hidden)
    make_activation(activation)

    if arch == "mlp":
        if not hidden:
            raise ValueError("hidden must list at least one hidden width for arch 'mlp'")
        if whiten_after is not None and (not _is_int(whiten_after) or not 1 <= whiten_after <= len(hidden)):
            raise ValueError(
                f"whiten_after must be None or in [1, {len(hidden)}] for this mlp, got {whiten_after!r}"
            )
        return MLP(
            (channels * height * width, *hidden, int(n_classes)),
            activation=activation,
            batch_norm=batch_norm,
            whiten_after=whiten_after,
        )

    if height != width:
        raise ValueError(f"dataset_shape must hold square images for arch 'cnn', got {dataset_shape!r}")
    if batch_norm:
        raise ValueError("batch_norm must be False for arch 'cnn' (the papers' CNN has no batch norm)")
    if len(hidden) > 1:
        raise ValueError(f"hidden must be () or a single FC width for arch 'cnn', got {hidden!r}")
    n_conv = 2
    if whiten_after is not None and (not _is_int(whiten_after) or whiten_after != n_conv):
        raise ValueError(
            f"whiten_after must be None or {n_conv} (the last conv layer) for arch 'cnn', got {whiten_after!r}"
        )
    return CNN(
        in_channels=channels,
        image_size=height,
        hidden=hidden[0] if hidden else _CNN_DEFAULT_HIDDEN,
        n_classes=int(n_classes),
        activation=activation,
        whiten=whiten_after is not None,
    )
