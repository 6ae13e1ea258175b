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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import inference
from .config import RunConfig
from .hardware import keep_freed_memory, warn_if_bf16_emulated
from .inference import autocast, chunks, measuring
from .methods import Penalty, build_penalty
from .models import Whitening
from .spectrum import CovarianceAccumulator


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run is abandoned, nothing is stored."""


def whitening_layers(model: nn.Module) -> list[Whitening]:
    return [m for m in model.modules() if isinstance(m, Whitening)]


class _InputsCollected(Exception):
    """Ends a forward pass once the last whitening layer's input has been recorded."""


def freeze_whitening(model: nn.Module, x_train: torch.Tensor, precision: str = "fp32") -> None:
    """Freeze every `Whitening` layer on the statistics of its input over `x_train`.

    The training set is pushed through the network up to its last whitening layer (eval
    mode, no gradient, chunks of `inference.EVAL_CHUNK` rows, of any size); a forward pre-hook streams
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
    try:
        with measuring(model, precision):
            for rows in chunks(len(x_train)):
                try:
                    model(x_train[rows])
                except _InputsCollected:
                    pass
    finally:
        for h in hooks:
            h.remove()
    for w in layers:
        acc, total = stats[id(w)]
        w.freeze((total / acc.count).float(), acc.covariance())


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


def checkpoint_epochs(path: Path, key: str) -> int:
    """Epochs done in the checkpoint of run `key` at `path` (0 when there is none)."""
    if not path.exists():
        return 0
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    return int(ckpt["epochs_done"]) if ckpt.get("key") == key else 0


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


def step_chunk(model: nn.Module, penalty: Penalty) -> int | None:
    """Images per forward/backward pass of a training step of `model` with `penalty`, or
    None for one pass over the whole batch.

    A model whose samples are independent in training mode may declare a `step_chunk` (the
    CNN: passes of cache-friendlier size instead of 6,000-image temporaries). It is used
    only when the penalty adds no term: a term of the whole batch's representations would
    need them before the first backward pass, i.e. a second forward pass, which measured
    slower than one pass over the batch (SpecReg on the CNN: 2.1 s vs 1.6 s per step).
    """
    chunk = getattr(model, "step_chunk", None)
    return chunk if chunk and not penalty.adds_term else None


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, penalty: Penalty,
                  xb: torch.Tensor, yb: torch.Tensor, precision: str = "fp32",
                  chunk: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on the batch ``xb [B, C, H, W]``, ``yb [B]``.

    Loss = cross-entropy + ``penalty(model, xb, yb, hidden)``, the method's term (Nassar et
    al. 2020, §3; `methods`), on the inputs ``penalty.training_inputs(model, xb, yb)`` (the
    batch itself except for adversarial training). The network runs under
    `autocast(precision)`; the
    cross-entropy is taken on float32 logits. Raises `NonFiniteLossError` (before any
    parameter changes) when the loss is NaN or infinite.

    `chunk` (see `step_chunk`: a model whose samples are independent, a penalty without a
    term): forward and backward run on `chunk` images at a time and the gradients of the
    chunks' shares of the mean cross-entropy accumulate. Same loss and gradient as one
    pass, up to float rounding (the order of the sums).

    Returns the detached loss, penalty (scalars) and logits ``[B, n_classes]``.
    """
    xb = penalty.training_inputs(model, xb, yb)  # [B, C, H, W]
    if chunk is not None and chunk < len(xb):
        if penalty.adds_term:
            raise ValueError("a chunked training step needs a penalty without a term "
                             "(see step_chunk)")
        return _chunked_step(model, optimizer, xb, yb, precision, chunk)
    with autocast(precision):
        logits, hs = model.forward_with_hidden(xb)  # [B, n_classes], [[B, N_l]]
    ce = F.cross_entropy(logits.float(), yb)
    term = penalty(model, xb, yb, hs)
    loss = ce + term
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), term.detach(), logits.detach()


def _chunked_step(model: nn.Module, optimizer: torch.optim.Optimizer, xb: torch.Tensor,
                  yb: torch.Tensor, precision: str, chunk: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`training_step` without a term, in passes of `chunk` images (see there)."""
    n = len(xb)
    optimizer.zero_grad(set_to_none=True)
    ce = torch.zeros((), dtype=torch.float32)
    logits_all = []
    for i in range(0, n, chunk):
        with autocast(precision):
            logits = model(xb[i:i + chunk])  # [b, n_classes]
        ce_chunk = F.cross_entropy(logits.float(), yb[i:i + chunk], reduction="sum") / n
        ce_chunk.backward()
        ce += ce_chunk.detach()
        logits_all.append(logits.detach())
    if not torch.isfinite(ce):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"loss became {ce.item()}")
    optimizer.step()
    return ce, torch.zeros(()), torch.cat(logits_all)


def train(model: nn.Module, config: RunConfig, x_train: torch.Tensor, y_train: torch.Tensor,
          x_test: torch.Tensor, y_test: torch.Tensor, *, checkpoint: Path | None = None,
          progress: bool = True, stop_after: int | None = None,
          on_epoch_end: Callable[[int, nn.Module, Penalty], None] | None = None,
          ) -> list[dict[str, float]]:
    """Train `model` as `config` says; return the per-epoch history.

    x_train [n, C, H, W] in [0, 1], y_train [n] int64. With `checkpoint`, the state after each
    epoch is saved there and training resumes from it when it exists. `stop_after` ends
    training after that many epochs of this call (used to test resumption).
    `on_epoch_end(epoch, model, penalty)` is called after each epoch (1-based epoch; the
    method's penalty still holds what it refreshed at that epoch's start); it must not
    change the model.
    Raises `NonFiniteLossError` naming the epoch when the loss becomes NaN/inf.
    """
    from tqdm import tqdm

    warn_if_bf16_emulated(config.precision)
    keep_freed_memory()
    opt = make_optimizer(config, model)
    penalty = build_penalty(config)
    state = TrainState(0, [])
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, opt, config.key) or state

    n = len(x_train)
    bs = min(config.batch_size, n)
    n_batches = max(1, n // bs)  # the last incomplete batch is dropped
    chunk = step_chunk(model, penalty)
    bar = tqdm(range(state.epochs_done, config.epochs), initial=state.epochs_done,
               total=config.epochs, desc=config.label, disable=not progress, leave=False)
    done_here = 0
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        if any(not bool(w.is_frozen) for w in whitening_layers(model)):
            freeze_whitening(model, x_train, config.precision)  # before the first epoch
        gen = epoch_generator(config.seed, epoch)
        order = torch.randperm(n, generator=gen)
        penalty.start_epoch(model, x_train, gen)  # eq. 2: eigenvectors on the training set
        sums = torch.zeros(3, dtype=torch.float64)  # loss, penalty, correct
        for b in range(n_batches):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = x_train.index_select(0, idx), y_train.index_select(0, idx)  # [B, C, H, W], [B]
            try:
                loss, term, logits = training_step(model, opt, penalty, xb, yb, config.precision,
                                                   chunk)
            except NonFiniteLossError as err:
                raise NonFiniteLossError(f"{err} at epoch {epoch + 1}, batch {b + 1} "
                                         f"({config.label}); nothing was stored") from None
            with torch.no_grad():
                sums += torch.stack([loss.double(), term.double(),
                                     (logits.argmax(1) == yb).sum().double()])
        loss_m, pen_m, correct = (sums / torch.tensor([n_batches, n_batches, 1.0])).tolist()
        freeze_whitening(model, x_train, config.precision)  # the epoch's final weights
        row = {"epoch": epoch + 1, "loss": loss_m, "penalty": pen_m,
               "train_accuracy": correct / (n_batches * bs),
               "test_accuracy": inference.accuracy(model, x_test, y_test, config.precision),
               "seconds": time.perf_counter() - t0}
        state.history.append(row)
        state.epochs_done = epoch + 1
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model, penalty)
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
