"""Training loop: Adam on cross-entropy + regularizer penalties, with per-epoch checkpoints.

Nassar et al. 2020, §3: the loss is cross-entropy plus the spectral penalty (eq. 2) of each
regularized layer. At the start of every epoch the eigenvectors of each regularized layer's
covariance over the WHOLE training set are recomputed (model in eval mode, no gradient);
within the epoch the batch eigenvalues are Rayleigh quotients on those fixed eigenvectors.

Whitening layers (Nassar et al. 2020, §4.2) whiten each training batch with its own
statistics; for evaluation (the epoch-start eigenvector refresh, test accuracy, and after
training) they are frozen on the training set's statistics at the end of every epoch (and
before the first), so evaluating a whitened network does not depend on the batching.

Determinism: the model is initialised from `config.seed`; the batch order and the random
projections of the Jacobian penalty come from generators seeded by (seed, epoch), so a run
resumed from the checkpoint of epoch k is identical to one that never stopped.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .models import Whitening
from .hardware import keep_freed_memory, warn_if_bf16_emulated
from .regularizers import JacobianRegularizer, SlopeRegularizer, SpectralRegularizer
from .spectrum import CovarianceAccumulator

#: Rows per chunk when the whole training set is pushed through the network.
EVAL_CHUNK = 5000


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run is abandoned, nothing is stored."""


def autocast(precision: str):
    """bf16 autocast for the network and the projection; a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def make_regularizers(config: RunConfig) -> dict[int, Callable]:
    """Layer index (1-based) -> penalty callable taking that layer's batch activations [B, N]."""
    kind = config.regularizer
    if kind == "spectral":
        return {l: SpectralRegularizer(alpha, config.tau, config.beta)
                for l, alpha in config.alphas.items()}
    if kind in ("slope", "slope-mse"):
        mode = "abs" if kind == "slope" else "mse"
        return {l: SlopeRegularizer(config.alpha, config.beta, ranks=config.slope_ranks, mode=mode,
                                    method=config.slope_method, seed=l)
                for l in config.reg_layers}
    return {}


def hidden_representations(model: nn.Module, x: torch.Tensor, layers: list[int],
                           precision: str = "fp32", chunk: int = EVAL_CHUNK
                           ) -> dict[int, torch.Tensor]:
    """Hidden activations of `layers` (1-based) over all of `x`, in eval mode, float32.

    Returns layer -> [n, N_l]. Evaluated in chunks of `chunk` rows (>= any whitened width),
    under `torch.inference_mode`, each chunk written straight into the preallocated output.
    """
    was_training = model.training
    model.eval()
    n = len(x)
    out: dict[int, torch.Tensor] = {}
    try:
        with torch.inference_mode(), autocast(precision):
            for i in range(0, n, chunk):
                _, hs = model.forward_with_hidden(x[i:i + chunk])
                for l in layers:
                    h = hs[l - 1]  # [chunk, N_l]
                    if l not in out:
                        out[l] = torch.empty(n, h.shape[1], dtype=torch.float32, device=h.device)
                    out[l][i:i + h.shape[0]] = h  # cast to float32 on copy
    finally:
        model.train(was_training)
    return {l: out[l] for l in layers}


def refresh_eigenvectors(model: nn.Module, regularizers: dict[int, Callable],
                         x_train: torch.Tensor, precision: str = "fp32") -> None:
    """Recompute each spectral regularizer's eigenvectors on the full training set.

    Nassar et al. 2020, §3: model in eval mode, no gradient. The training set is pushed
    through the network once, in chunks of `EVAL_CHUNK` rows under `torch.inference_mode`
    (and bf16 autocast for `precision="bf16"`); each regularized layer's chunk goes
    straight into a float32-Gram / float64-sum `CovarianceAccumulator`, so the [n, N_l]
    activations are never stored. The eigendecomposition is float64.
    """
    layers = [l for l, r in regularizers.items() if getattr(r, "needs_refresh", True)]
    if not layers:
        return
    accumulators: dict[int, CovarianceAccumulator] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            for i in range(0, len(x_train), EVAL_CHUNK):
                _, hs = model.forward_with_hidden(x_train[i:i + EVAL_CHUNK])
                for l in layers:
                    h = hs[l - 1]  # [chunk, N_l], float32 or bf16
                    if l not in accumulators:
                        accumulators[l] = CovarianceAccumulator(h.shape[1])
                    accumulators[l].update(h)
    finally:
        model.train(was_training)
    for l in layers:
        regularizers[l].refresh_from_covariance(accumulators.pop(l).covariance())


def whitening_layers(model: nn.Module) -> list[Whitening]:
    return [m for m in model.modules() if isinstance(m, Whitening)]


class _InputsCollected(Exception):
    """Ends a forward pass once the last whitening layer's input has been recorded."""


def freeze_whitening(model: nn.Module, x_train: torch.Tensor, precision: str = "fp32") -> None:
    """Freeze every `Whitening` layer on the statistics of its input over `x_train`.

    The training set is pushed through the network up to its last whitening layer (eval
    mode, no gradient, chunks of `EVAL_CHUNK` rows, of any size); a forward pre-hook streams
    each whitening layer's input into a float64 mean and a `CovarianceAccumulator`, then
    `Whitening.freeze` stores them. In
    evaluation mode the network is then a per-sample function: test accuracy, attacks and
    spectra no longer depend on how the test set is batched. A no-op without whitening.
    """
    layers = whitening_layers(model)
    if not layers:
        return
    stats = {id(w): [CovarianceAccumulator(w.width), torch.zeros(w.width, dtype=torch.float64)]
             for w in layers}

    def collect(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        acc, total = stats[id(module)]
        acc.update(inputs[0])                                  # [chunk, N]
        total += inputs[0].sum(dim=0, dtype=torch.float64)     # [N]
        if module is layers[-1]:
            raise _InputsCollected  # nothing after the last whitening layer is needed

    hooks = [w.register_forward_pre_hook(collect) for w in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            for i in range(0, len(x_train), EVAL_CHUNK):
                try:
                    model(x_train[i:i + EVAL_CHUNK])
                except _InputsCollected:
                    pass
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for w in layers:
        acc, total = stats[id(w)]
        w.freeze((total / acc.count).float(), acc.covariance())


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32",
             chunk: int = EVAL_CHUNK) -> float:
    """Fraction of correctly classified images, eval mode, in chunks."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.inference_mode(), autocast(precision):
            for i in range(0, len(x), chunk):
                correct += int((model(x[i:i + chunk]).argmax(1) == y[i:i + chunk]).sum())
    finally:
        model.train(was_training)
    return correct / len(x)


def make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (amsgrad for "amsgrad"), fused kernel: one pass per parameter tensor per step."""
    return torch.optim.Adam(model.parameters(), lr=config.lr,
                            amsgrad=config.optimizer == "amsgrad", fused=True)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * seed + epoch)


@dataclass
class TrainState:
    """What a checkpoint holds: the model and optimizer after `epochs_done` epochs."""

    epochs_done: int
    history: list[dict[str, float]]


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    state: TrainState, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "epochs_done": state.epochs_done, "history": state.history}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    key: str) -> TrainState | None:
    if not path.exists():
        return None
    ckpt = torch.load(path, weights_only=False)
    if ckpt.get("key") != key:
        return None
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    return TrainState(ckpt["epochs_done"], ckpt["history"])


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                  regularizers: dict[int, Callable], xb: torch.Tensor, yb: torch.Tensor,
                  precision: str = "fp32", *, jacobian: JacobianRegularizer | None = None,
                  generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on the batch ``xb [B, C, H, W]``, ``yb [B]``.

    Loss = cross-entropy + the penalties of `regularizers` (layer -> callable on that
    layer's activations ``[B, N_l]``) + the Jacobian penalty when given (Nassar et al.
    2020, §3). The network and the penalties' projections run under `autocast(precision)`;
    the cross-entropy is taken on float32 logits. Raises `NonFiniteLossError` (before any
    parameter changes) when the loss is NaN or infinite.

    Returns the detached loss, penalty (scalars) and logits ``[B, n_classes]``.
    """
    with autocast(precision):
        logits, hs = model.forward_with_hidden(xb)
        penalty = sum((regularizers[l](hs[l - 1]) for l in regularizers), torch.zeros(()))
    ce = F.cross_entropy(logits.float(), yb)
    if jacobian is not None:
        penalty = penalty + jacobian(model, xb, generator=generator)
    loss = ce + penalty
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), penalty.detach(), logits.detach()


def train(model: nn.Module, config: RunConfig, x_train: torch.Tensor, y_train: torch.Tensor,
          x_test: torch.Tensor, y_test: torch.Tensor, *, checkpoint: Path | None = None,
          progress: bool = True, stop_after: int | None = None,
          on_epoch_end: Callable[[int, nn.Module, dict[int, Callable]], None] | None = None,
          ) -> list[dict[str, float]]:
    """Train `model` as `config` says; return the per-epoch history.

    x_train [n, C, H, W] in [0, 1], y_train [n] int64. With `checkpoint`, the state after each
    epoch is saved there and training resumes from it when it exists. `stop_after` ends
    training after that many epochs of this call (used to test resumption).
    `on_epoch_end(epoch, model, regularizers)` is called after each epoch (1-based epoch;
    the regularizers still hold the eigenvectors refreshed at that epoch's start); it must
    not change the model.
    Raises `NonFiniteLossError` naming the epoch when the loss becomes NaN/inf.
    """
    from tqdm import tqdm

    warn_if_bf16_emulated(config.precision)
    keep_freed_memory()
    opt = make_optimizer(config, model)
    regs = make_regularizers(config)
    jac = (JacobianRegularizer(config.beta, config.jacobian_projections)
           if config.regularizer == "jacobian" else None)
    state = TrainState(0, [])
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, opt, config.key) or state

    n = len(x_train)
    bs = min(config.batch_size, n)
    n_batches = max(1, n // bs)  # the last incomplete batch is dropped
    bar = tqdm(range(state.epochs_done, config.epochs), initial=state.epochs_done,
               total=config.epochs, desc=config.label, disable=not progress, leave=False)
    done_here = 0
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        if any(not bool(w.is_frozen) for w in whitening_layers(model)):
            freeze_whitening(model, x_train, config.precision)  # before the first epoch
        refresh_eigenvectors(model, regs, x_train, config.precision)
        for reg in regs.values():
            if hasattr(reg, "start_epoch"):
                reg.start_epoch()
        gen = epoch_generator(config.seed, epoch)
        order = torch.randperm(n, generator=gen)
        sums = torch.zeros(3, dtype=torch.float64)  # loss, penalty, correct
        for b in range(n_batches):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x_train.index_select(0, idx), y_train.index_select(0, idx)  # [B, C, H, W], [B]
            try:
                loss, penalty, logits = training_step(model, opt, regs, xb, yb, config.precision,
                                                      jacobian=jac, generator=gen)
            except NonFiniteLossError as err:
                raise NonFiniteLossError(f"{err} at epoch {epoch + 1}, batch {b + 1} "
                                         f"({config.label}); nothing was stored") from None
            with torch.no_grad():
                sums += torch.stack([loss.double(), penalty.double(),
                                     (logits.argmax(1) == yb).sum().double()])
        loss_m, pen_m, correct = (sums / torch.tensor([n_batches, n_batches, 1.0])).tolist()
        freeze_whitening(model, x_train, config.precision)  # the epoch's final weights
        row = {"epoch": epoch + 1, "loss": loss_m, "penalty": pen_m,
               "train_accuracy": correct / (n_batches * bs),
               "test_accuracy": accuracy(model, x_test, y_test, config.precision),
               "seconds": time.perf_counter() - t0}
        state.history.append(row)
        state.epochs_done = epoch + 1
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model, regs)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, opt, state, config.key)
        bar.set_postfix(loss=f"{loss_m:.4f}", penalty=f"{pen_m:.4f}",
                        acc=f"{row['test_accuracy']:.4f}")
        done_here += 1
        if stop_after is not None and done_here >= stop_after:
            break
    bar.close()
    if not all(math.isfinite(v) for r in state.history for v in r.values()):
        raise NonFiniteLossError(f"non-finite value in the training history ({config.label})")
    return state.history
